// The owner as Element Web is: matrix-js-sdk with its Rust crypto, driven by the test
// suite (tests/support/element.py) one JSON line at a time.
//
//   -> {"id": 1, "command": "login", "baseUrl": "...", "userId": "...", "password": "..."}
//   <- {"id": 1, "ok": true, "result": {"deviceId": "..."}}
//   <- {"id": 2, "ok": false, "error": "what went wrong"}
//
// Commands run one at a time, in order. Protocol lines are the only thing written to
// stdout; the SDK's own logging goes to stderr. Waits poll every 50 ms and give up after
// the `timeoutMs` they are given, saying what they saw. End of stdin (or "stop") stops
// the client and exits.

import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

// js-sdk 43 wants Node 22; on Node 20 this is the one thing missing. Defined before the
// SDK is imported (dynamically, below: static imports would run first).
Promise.withResolvers ??= function withResolvers() {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
    });
    return { promise, resolve, reject };
};

for (const method of ["log", "info", "debug", "trace"]) console[method] = console.error;

const sdk = await import("matrix-js-sdk");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

logger.setLevel(process.env.ELEMENT_OWNER_LOG_LEVEL ?? "warn");

const POLL_MS = 50;
const MEGOLM = "m.megolm.v1.aes-sha2";

let client = null;
let password = null;
const timeline = new Map(); // room id -> Map(event id -> MatrixEvent), in arrival order
const taken = new Set(); // ids of messages a `waitMessage` already returned

function crypto() {
    return client.getCrypto();
}

async function until(check, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const found = await check();
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(POLL_MS);
    }
}

function remember(event) {
    const roomId = event.getRoomId();
    if (!timeline.has(roomId)) timeline.set(roomId, new Map());
    timeline.get(roomId).set(event.getId(), event);
}

function eventsIn(roomId) {
    return [...(timeline.get(roomId)?.values() ?? [])];
}

function describe(event) {
    const raw = event.getClearContent() ?? event.getWireContent();
    const relation = event.getRelation();
    return {
        replaces: relation?.rel_type === "m.replace" ? relation.event_id : null,
        newBody: raw["m.new_content"]?.body ?? null,
        eventId: event.getId(),
        sender: event.getSender(),
        deviceId: event.getWireContent().device_id ?? null,
        type: event.getType(),
        msgtype: event.getContent().msgtype ?? null,
        body: event.getContent().body ?? null,
        encrypted: event.isEncrypted(),
        decryptionFailure: event.decryptionFailureReason ?? null,
    };
}

// Attachments as Element encrypts them (its matrix-encrypt-attachment, over WebCrypto):
// AES-256-CTR with a random key and the IV's low 64 bits zero, the key as a JWK, and the
// SHA-256 of the ciphertext, in unpadded base64.
const subtle = globalThis.crypto.subtle;

function unpadded(bytes) {
    return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

async function encryptAttachment(plaintext) {
    const key = await subtle.generateKey({ name: "AES-CTR", length: 256 }, true, ["encrypt", "decrypt"]);
    const iv = new Uint8Array(16);
    globalThis.crypto.getRandomValues(iv.subarray(0, 8));
    const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, plaintext));
    const jwk = await subtle.exportKey("jwk", key);
    const hash = new Uint8Array(await subtle.digest("SHA-256", ciphertext));
    return {
        ciphertext,
        file: {
            v: "v2",
            key: { kty: "oct", alg: "A256CTR", ext: true, k: jwk.k, key_ops: ["encrypt", "decrypt"] },
            iv: unpadded(iv),
            hashes: { sha256: unpadded(hash) },
        },
    };
}

async function decryptAttachment(ciphertext, file) {
    const hash = unpadded(new Uint8Array(await subtle.digest("SHA-256", ciphertext)));
    if (hash !== file.hashes.sha256.replace(/=+$/, "")) throw new Error("the attachment's hash does not match");
    const key = await subtle.importKey("jwk", { ...file.key, ext: true }, { name: "AES-CTR" }, false, ["decrypt"]);
    const counter = Buffer.from(file.iv, "base64");
    return new Uint8Array(await subtle.decrypt({ name: "AES-CTR", counter, length: 64 }, key, ciphertext));
}

function summary(roomId) {
    return JSON.stringify(eventsIn(roomId).map(describe).filter((e) => e.type !== "m.room.member"));
}

const commands = {
    async login({ baseUrl, userId, password: secret, deviceId }) {
        const anonymous = sdk.createClient({ baseUrl });
        const login = await anonymous.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password: secret,
            device_id: deviceId,
        });
        password = secret;
        client = sdk.createClient({
            baseUrl,
            userId: login.user_id,
            deviceId: login.device_id,
            accessToken: login.access_token,
        });
        await client.initRustCrypto({ useIndexedDB: false });
        client.on(sdk.RoomEvent.Timeline, (event) => {
            remember(event);
            client.decryptEventIfNeeded(event);
        });
        client.on(sdk.MatrixEventEvent.Decrypted, remember);
        const prepared = new Promise((resolve) =>
            client.on(sdk.ClientEvent.Sync, (state) => state === "PREPARED" && resolve()),
        );
        await client.startClient({ initialSyncLimit: 20 });
        await prepared;
        return { userId: login.user_id, deviceId: login.device_id };
    },

    // As Element does for a new account (`reset`: as its "reset cryptographic identity"
    // does); a server that asks for user-interactive auth gets the password.
    async bootstrapCrossSigning({ reset = false }) {
        await crypto().bootstrapCrossSigning({
            setupNewCrossSigning: reset,
            authUploadDeviceSigningKeys: async (makeRequest) => {
                try {
                    return await makeRequest(null);
                } catch (error) {
                    const session = error.httpStatus === 401 ? error.data?.session : undefined;
                    if (session === undefined) throw error;
                    return await makeRequest({
                        type: "m.login.password",
                        identifier: { type: "m.id.user", user: client.getUserId() },
                        password,
                        session,
                    });
                }
            },
        });
        return { masterKey: await crypto().getCrossSigningKeyId() };
    },

    async createRoom({ invite, encrypted = true }) {
        const initial_state = encrypted
            ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }]
            : [];
        const { room_id: roomId } = await client.createRoom({ invite, initial_state, preset: "private_chat" });
        return { roomId };
    },

    async waitMembership({ roomId, userId, membership = "join", timeoutMs }) {
        await until(
            () => client.getRoom(roomId)?.getMember(userId)?.membership === membership,
            timeoutMs,
            `${userId} to be ${membership} in ${roomId}`,
        );
        return {};
    },

    async send({ roomId, body }) {
        const { event_id: eventId } = await client.sendTextMessage(roomId, body);
        return { eventId };
    },

    // An edit as Element sends one: the new text in m.new_content, "* " before the fallback.
    async sendEdit({ roomId, eventId, body }) {
        const content = {
            msgtype: "m.text",
            body: `* ${body}`,
            "m.new_content": { msgtype: "m.text", body },
            "m.relates_to": { rel_type: "m.replace", event_id: eventId },
        };
        const { event_id: sent } = await client.sendMessage(roomId, content);
        return { eventId: sent };
    },

    // A rich reply as Element sends one (Matrix 1.13: no fallback quoted in the body).
    async sendReply({ roomId, eventId, body }) {
        const content = { msgtype: "m.text", body, "m.relates_to": { "m.in_reply_to": { event_id: eventId } } };
        const { event_id: sent } = await client.sendMessage(roomId, content);
        return { eventId: sent };
    },

    async react({ roomId, eventId, key }) {
        const relation = { rel_type: "m.annotation", event_id: eventId, key };
        const { event_id: sent } = await client.sendEvent(roomId, "m.reaction", { "m.relates_to": relation });
        return { eventId: sent };
    },

    // A picture, file or voice message as Element sends one: uploaded with the SDK's
    // uploadContent, encrypted first in an encrypted room.
    async sendMedia({ roomId, dataBase64, name, mimetype, msgtype, voice = false, body = null }) {
        const plaintext = Buffer.from(dataBase64, "base64");
        const encrypted = await crypto().isEncryptionEnabledInRoom(roomId);
        const sealed = encrypted ? await encryptAttachment(plaintext) : null;
        const type = encrypted ? "application/octet-stream" : mimetype;
        const { content_uri: uri } = await client.uploadContent(new Blob([sealed?.ciphertext ?? plaintext], { type }), {
            name,
            type,
        });
        const content = { msgtype, body: body ?? name, filename: name, info: { mimetype, size: plaintext.length } };
        if (sealed) content.file = { url: uri, ...sealed.file };
        else content.url = uri;
        if (voice) {
            content["org.matrix.msc3245.voice"] = {};
            content["org.matrix.msc1767.audio"] = { duration: 1000 };
        }
        const { event_id: eventId } = await client.sendMessage(roomId, content);
        return { eventId, encrypted };
    },

    // The bytes of a media message, from authenticated media, decrypted after its hash
    // is checked when it is an encrypted attachment.
    async downloadMedia({ roomId, eventId }) {
        const event = timeline.get(roomId)?.get(eventId);
        if (event === undefined) throw new Error(`no event ${eventId} in ${roomId}`);
        const content = event.getContent();
        const mxc = content.file?.url ?? content.url;
        const url = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
        const answer = await fetch(url, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
        if (!answer.ok) throw new Error(`download of ${mxc}: HTTP ${answer.status}`);
        let bytes = new Uint8Array(await answer.arrayBuffer());
        if (content.file) bytes = await decryptAttachment(bytes, content.file);
        return {
            dataBase64: Buffer.from(bytes).toString("base64"),
            msgtype: content.msgtype,
            name: content.filename ?? content.body,
            mimetype: content.info?.mimetype ?? null,
            encryptedAttachment: Boolean(content.file),
        };
    },

    // The oldest message from `sender` in the room that no earlier call returned:
    // decrypted, or (`undecryptable`) one the SDK failed to decrypt.
    async waitMessage({ roomId, sender, undecryptable = false, timeoutMs }) {
        const wanted = (event) =>
            undecryptable
                ? event.isDecryptionFailure()
                : event.getType() === "m.room.message" && !event.isDecryptionFailure();
        const isNew = (event) =>
            event.getSender() === sender &&
            !taken.has(event.getId()) &&
            !event.isBeingDecrypted() &&
            wanted(event);
        const what = `${undecryptable ? "an undecryptable" : "a"} message from ${sender}`;
        const event = await until(() => eventsIn(roomId).find(isNew), timeoutMs, what).catch((error) => {
            throw new Error(`${error.message}; the room holds ${summary(roomId)}`);
        });
        taken.add(event.getId());
        return describe(event);
    },

    async undecryptable({ roomId }) {
        return { events: eventsIn(roomId).filter((e) => e.isDecryptionFailure()).map(describe) };
    },

    async shield({ roomId, eventId }) {
        const event = timeline.get(roomId)?.get(eventId);
        if (event === undefined) throw new Error(`no event ${eventId} in ${roomId}`);
        const info = await crypto().getEncryptionInfoForEvent(event);
        if (info === null) return { colour: null, reason: null };
        return {
            colour: cryptoApi.EventShieldColour[info.shieldColour],
            reason: info.shieldReason === null ? null : cryptoApi.EventShieldReason[info.shieldReason],
        };
    },

    // Waits until the device is known (and, when `signedByOwner` is given, until its
    // signature state is that).
    async deviceStatus({ userId, deviceId, signedByOwner, timeoutMs }) {
        let last = null;
        const wanted = async () => {
            last = await crypto().getDeviceVerificationStatus(userId, deviceId);
            return last !== null && (signedByOwner === undefined || last.signedByOwner === signedByOwner);
        };
        const signature = signedByOwner === undefined ? "" : ` signedByOwner=${signedByOwner}`;
        const what = `device ${deviceId} of ${userId}${signature}`;
        await until(wanted, timeoutMs, what).catch((error) => {
            throw new Error(`${error.message}; last seen: ${JSON.stringify(last)}`);
        });
        return {
            signedByOwner: last.signedByOwner,
            crossSigningVerified: last.crossSigningVerified,
            localVerified: last.localVerified,
        };
    },

    // The public master key of the user's identity as the SDK holds it (null: none).
    async masterKey({ userId }) {
        const keys = await crypto().getUserCrossSigningKeys(userId);
        return { masterKey: keys === null ? null : Object.values(keys.master_key.keys)[0] };
    },

    async crossSignDevice({ deviceId, timeoutMs }) {
        await until(
            () => crypto().getDeviceVerificationStatus(client.getUserId(), deviceId),
            timeoutMs,
            `own device ${deviceId}`,
        );
        await crypto().crossSignDevice(deviceId);
        return {};
    },

    // "all" or "onlySigned" (Element's "exclude insecure devices", MSC4153).
    async setIsolationMode({ mode }) {
        const modes = {
            all: () => new cryptoApi.AllDevicesIsolationMode(false),
            onlySigned: () => new cryptoApi.OnlySignedDevicesIsolationMode(),
        };
        if (!(mode in modes)) throw new Error(`unknown isolation mode ${mode}`);
        crypto().setDeviceIsolationMode(modes[mode]());
        return {};
    },

    async stop() {
        client?.stopClient();
        client = null;
        return {};
    },
};

function answer(line) {
    process.stdout.write(JSON.stringify(line) + "\n");
}

for await (const line of createInterface({ input: process.stdin })) {
    const { id, command, ...args } = JSON.parse(line);
    try {
        if (!(command in commands)) throw new Error(`unknown command ${command}`);
        if (command !== "login" && command !== "stop" && client === null) throw new Error("not logged in");
        answer({ id, ok: true, result: await commands[command](args) });
    } catch (error) {
        answer({ id, ok: false, error: error instanceof Error ? error.message : String(error) });
    }
    if (command === "stop") break;
}
await commands.stop();
process.exit(0);
