from ganglion.cli import console

console()
