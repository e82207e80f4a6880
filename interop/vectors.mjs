// Checks docs/test-vectors.json with this program's own implementation of
// docs/PROTOCOL.md: every value is recomputed (or, for a sealed box's random
// bytes, opened) from the vector's inputs, never copied from the Python side.

import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as R from './records.mjs'

const { sodium, hex, unhex, pack, decode, concat } = R

function same (name, got, expected) {
  const g = got instanceof Uint8Array ? hex(got) : got
  if (JSON.stringify(g) !== JSON.stringify(expected)) {
    throw new Error(`${name}: computed ${JSON.stringify(g)}, the vector says ${JSON.stringify(expected)}`)
  }
}

/** A vector's ``fields`` as a record map: ``x_hex`` keys are bytes (or lists of them). */
function recordMap (fields) {
  const doc = {}
  for (const [key, value] of Object.entries(fields)) {
    if (key.endsWith('_hex')) {
      doc[key.slice(0, -4)] = Array.isArray(value) ? value.map(unhex) : unhex(value)
    } else if (key === 'items') { // a catalogue's [id, seq] pairs: ids in hex
      doc.items = value.map(([id, seq]) => [unhex(id), seq])
    } else {
      doc[key] = value
    }
  }
  return doc
}

async function identity (v) {
  const seed = unhex(v.inputs.seed_hex)
  const keys = sodium.crypto_sign_seed_keypair(seed)
  same('public key', keys.publicKey, v.expected.public_key_hex)
  const peer = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seed)).toString()
  same('peer id', peer, v.expected.peer_id)
  same('x25519 public', sodium.crypto_sign_ed25519_pk_to_curve25519(keys.publicKey), v.expected.x25519_public_hex)
  same('x25519 secret', sodium.crypto_sign_ed25519_sk_to_curve25519(keys.privateKey), v.expected.x25519_secret_hex)
}

function record (v) {
  const e = v.expected
  const keys = sodium.crypto_sign_seed_keypair(unhex(v.inputs.seed_hex))
  const doc = recordMap(e.fields)
  same('signed message', R.signedMessage(doc), e.signed_message_hex)
  // ed25519 is deterministic: signing the same message gives the same signature.
  same('sig', sodium.crypto_sign_detached(R.signedMessage(doc), keys.privateKey), e.sig_hex)
  same('record', pack(doc), e.record_hex)
  R.verifyRecord(unhex(e.record_hex), { bits: v.inputs.stamp_bits })
  if (e.stamp_work_hex) same('stamp work', R.stampWork(doc.sig, doc.pow), e.stamp_work_hex)
  const seller = doc.seller ?? doc.owner
  if (e.listing_id_hex) {
    const id = R.listingId(seller, doc.nonce)
    same('listing id', id, e.listing_id_hex)
    same('sync key', concat(R.utf8('L'), id), e.sync_key_hex)
    if (e.listing_id_text) same('id text', R.b32(id), e.listing_id_text)
    if (e.dht_key) same('dht key', R.listingKey(id), e.dht_key)
  }
  if (doc.type === 'profile') {
    same('sync key', concat(R.utf8('F'), seller), e.sync_key_hex)
    same('dht key', R.hashedKey('p2pmarket-profile', 'p2pmarket/profile-key/v1', seller), e.dht_key)
  }
  if (doc.type === 'catalogue') {
    same('dht key', R.catalogueKey(seller), e.dht_key)
    same('reviews key', R.hashedKey('p2pmarket-reviews', 'p2pmarket/reviews-key/v1', seller), e.reviews_dht_key)
  }
  if (e.gossip_message_id_hex) {
    for (const [topic, id] of Object.entries(e.gossip_message_id_hex)) {
      same(`message id on ${topic}`, R.messageId(topic, unhex(e.record_hex)), id)
    }
  }
}

function directMessage (v) {
  const { inputs: i, expected: e } = v
  const sender = sodium.crypto_sign_seed_keypair(unhex(i.sender_seed_hex))
  const recipient = sodium.crypto_sign_seed_keypair(unhex(i.recipient_seed_hex))
  const body = R.utf8(i.text)
  same('body', body, e.body_hex)
  const fields = [sender.publicKey, recipient.publicKey, unhex(i.letter_id_hex), i.sent, i.kind, body]
  same('letter signed message', R.letterMessage(fields), e.letter_signed_message_hex)
  const sig = sodium.crypto_sign_detached(R.letterMessage(fields), sender.privateKey)
  same('letter sig', sig, e.letter_sig_hex)
  same('letter', pack([1, ...fields, sig]), e.letter_hex)
  // The sealed box has a fresh ephemeral key: open it rather than compare it.
  same('letter in the envelope', R.openBox(unhex(e.envelope_hex), recipient), e.letter_hex)
  const letter = R.openEnvelope(unhex(e.envelope_hex), recipient)
  same('letter sender', letter.sender, hex(sender.publicKey))
  same('request frame', R.frame(unhex(e.envelope_hex)), e.dm_request_frame_hex)
  same('receipt body', pack([[unhex(i.letter_id_hex), 2]]), e.receipt_body_hex)
  same('receipt in its envelope', R.openBox(unhex(e.receipt_envelope_hex), sender), e.receipt_letter_hex)
  const receipt = R.openEnvelope(unhex(e.receipt_envelope_hex), sender)
  same('receipt kind', receipt.kind, 'receipt')
  same('receipt sent', receipt.sent, i.receipt_sent)
  same('answer frame', R.frame(unhex(e.receipt_envelope_hex)), e.dm_answer_frame_hex)
  // The mailbox stamp's subject: "p2pmarket/mailbox" 0x00 || BLAKE2b-256(envelope).
  same('mailbox stamp subject', concat(R.utf8('p2pmarket/mailbox\0'), R.blake2b(32, unhex(e.envelope_hex))),
    e.mailbox_stamp_subject_hex)
}

function syncSession (v, byName) {
  const frames = v.expected.frames
  const records = new Map()
  for (const name of ['listing', 'tombstone', 'profile']) {
    records.set(byName[name].expected.record_hex, name)
  }
  for (const f of frames) {
    const bytes = unhex(f.hex)
    const size = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0)
    same(`${f.meaning}: length`, size, bytes.length - 4)
    const [type, body] = decode(bytes.subarray(4))
    same(`${f.meaning}: canonical`, pack([type, body]), hex(bytes.subarray(4)))
    if (f.stream === 'reconcile') {
      same(`${f.meaning}: frame type`, type, 1)
      for (const [upper, mode] of body) {
        if (upper !== null && !(upper instanceof Uint8Array)) throw new Error('a range bound is bin or nil')
        if (![0, 1, 2, 3].includes(mode)) throw new Error(`mode ${mode}`)
      }
    } else if (type === 3) {
      for (const rec of body) {
        R.verifyRecord(rec, { bits: 13 })
        if (!records.has(hex(rec))) throw new Error('a fetched record that is not a vector record')
      }
    } else {
      same(`${f.meaning}: frame type`, type, 2)
    }
  }
  // A speaks first with all its items (mode 2), keys in order.
  const [, first] = decode(unhex(frames[0].hex).subarray(4))
  const items = first[0][2]
  const pairs = []
  for (let i = 0; i < items.length; i += 2) pairs.push([hex(items[i]), items[i + 1]])
  same('A\'s items', pairs, v.inputs.a_items)
}

function syncFingerprint (v) {
  const e = v.expected
  const hashes = v.inputs.items.map(([key, seq]) => {
    const s = new Uint8Array(8)
    new DataView(s.buffer).setBigUint64(0, BigInt(seq))
    return R.blake2b(32, unhex(key), s)
  })
  same('item hashes', hashes.map(hex), e.item_hashes_hex)
  let sum = 0n
  for (const h of hashes) sum = (sum + BigInt('0x' + hex(h))) % (1n << 256n)
  const sumBytes = unhex(sum.toString(16).padStart(64, '0'))
  same('sum', sumBytes, e.sum_hex)
  const count = new Uint8Array(8)
  new DataView(count.buffer).setBigUint64(0, BigInt(hashes.length))
  same('fingerprint', R.blake2b(16, sumBytes, count), e.fingerprint_hex)
}

const CHECKERS = {
  identity_seller: identity,
  identity_buyer: identity,
  listing: record,
  tombstone: record,
  profile: record,
  catalogue: record,
  direct_message: directMessage,
  sync_session: syncSession,
  sync_fingerprint: syncFingerprint
}

/** [{name, ok, error?}] for every vector; a vector of an unknown name fails. */
export async function checkVectors (file) {
  const byName = Object.fromEntries(file.vectors.map((v) => [v.name, v]))
  const checks = []
  for (const v of file.vectors) {
    try {
      const checker = CHECKERS[v.name]
      if (checker === undefined) throw new Error('no checker for this vector in interop/vectors.mjs')
      await checker(v, byName)
      checks.push({ name: v.name, ok: true })
    } catch (err) {
      checks.push({ name: v.name, ok: false, error: String(err.message ?? err) })
    }
  }
  return checks
}
