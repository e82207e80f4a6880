// p2pmarket's data formats, written from docs/PROTOCOL.md: signed records,
// proof-of-work stamps, DHT keys, sealed envelopes. Only stock libraries:
// @msgpack/msgpack for the encoding, libsodium (the sumo build, for Argon2id)
// for ed25519, BLAKE2b, sealed boxes and the stamp, multiformats for base32.

import { encode, decode } from '@msgpack/msgpack'
import { base32 } from 'multiformats/bases/base32'
import _sodium from 'libsodium-wrappers-sumo'

await _sodium.ready
export const sodium = _sodium

const text = new TextEncoder()
const utf8 = (s) => text.encode(s)
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
export const hex = (b) => Buffer.from(b).toString('hex')
export const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))

export const MAX_RECORD_BYTES = 8192
const DOMAIN = {
  listing: 'p2pmarket/listing/v1',
  tombstone: 'p2pmarket/tombstone/v1',
  profile: 'p2pmarket/profile/v1',
  catalogue: 'p2pmarket/catalogue/v1',
  review: 'p2pmarket/review/v1'
}
const KEYS = {
  listing: 'cat cur desc exp img kind loc nonce pow price qty seller seq sig tags title ts type v',
  tombstone: 'exp nonce pow seller seq sig ts type v',
  profile: 'bio contacts loc name owner pow seq sig ts type v',
  catalogue: 'items seller seq sig ts type v',
  review: 'contract pow reviewer seq sig stars subject text ts type v'
}
const AUTHOR = { listing: 'seller', tombstone: 'seller', profile: 'owner', catalogue: 'seller', review: 'reviewer' }

const domain = (name) => utf8(name + '\0')

/** The canonical encoding: msgpack, map keys in ascending byte order (our keys
 * are ASCII, so JavaScript's string order is byte order), shortest integers. */
export const pack = (value) => encode(value, { sortKeys: true })

/** The stamp difficulty of this (test) network: P2PMARKET_STAMP_BITS, else 13. */
export function stampBits () {
  const bits = Number.parseInt(process.env.P2PMARKET_STAMP_BITS ?? '', 10)
  return Number.isInteger(bits) && bits >= 0 && bits <= 32 ? bits : 13
}

/** Argon2id(password = "p2pmarket/stamp/v1" 0x00 || subject, salt = nonce, t=1, m=64 KiB, p=1, 32 bytes). */
export function stampWork (subject, nonce) {
  return sodium.crypto_pwhash(32, concat(domain('p2pmarket/stamp/v1'), subject), nonce, 1, 65536,
    sodium.crypto_pwhash_ALG_ARGON2ID13)
}

function leadingZeroBits (bytes) {
  let bits = 0
  for (const byte of bytes) {
    if (byte === 0) { bits += 8; continue }
    return bits + Math.clz32(byte) - 24
  }
  return bits
}

export function stampOk (subject, nonce, bits = stampBits()) {
  if (!(nonce instanceof Uint8Array) || nonce.length !== 16) return false
  return bits === 0 || leadingZeroBits(stampWork(subject, nonce)) >= bits
}

/** The first stamp counting up: nonce = 8-byte big-endian counter, 8 zero bytes. */
export function solveStamp (subject, bits = stampBits()) {
  for (let counter = 0n; ; counter++) {
    const nonce = new Uint8Array(16)
    new DataView(nonce.buffer).setBigUint64(0, counter)
    if (bits === 0 || leadingZeroBits(stampWork(subject, nonce)) >= bits) return nonce
  }
}

export const blake2b = (size, ...parts) => sodium.crypto_generichash(size, concat(...parts))
export const b32 = (bytes) => base32.baseEncode(bytes) // RFC 4648, lowercase, no padding

export const listingId = (seller, nonce) => blake2b(16, domain('p2pmarket/listing-id/v1'), seller, nonce)
export const listingKey = (id) => `/p2pmarket-listing/${b32(id)}`
/** A key by owner: /namespace/base32(BLAKE2b-128(domain 0x00 || key)), short enough for py-libp2p. */
export const hashedKey = (namespace, domainName, key) =>
  `/${namespace}/${b32(blake2b(16, domain(domainName), key))}`
export const catalogueKey = (seller) => hashedKey('p2pmarket-catalogue', 'p2pmarket/catalogue-key/v1', seller)

/** GossipSub message id: BLAKE2b-160 over topic (UTF-8) || 0x00 || data. */
export const messageId = (topic, data) => blake2b(20, utf8(topic), new Uint8Array([0]), data)

/** Signed bytes of a record map: DOMAIN(type) || canonical encoding without sig and pow. */
export function signedMessage (doc) {
  const { sig, pow, ...fields } = doc
  return concat(domain(DOMAIN[doc.type]), pack(fields))
}

/**
 * Decode and check a record as a receiver must: canonical bytes, known type and
 * keys, the author's signature and (except a catalogue) the stamp. Returns the
 * map, or throws an Error saying what is wrong. Field-level rules (lengths,
 * categories, clock) are checked only where this program relies on them.
 */
export function verifyRecord (data, { bits = stampBits() } = {}) {
  if (data.length > MAX_RECORD_BYTES) throw new Error(`record of ${data.length} bytes`)
  const doc = decode(data)
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a map')
  const keys = KEYS[doc.type]
  if (keys === undefined) throw new Error(`unknown type ${doc.type}`)
  if (doc.v !== 1) throw new Error('unknown version')
  const present = Object.keys(doc).sort().join(' ')
  if (present !== keys) throw new Error(`keys ${present}, expected ${keys}`)
  if (!equal(pack(doc), data)) throw new Error('not in canonical encoding')
  const author = doc[AUTHOR[doc.type]]
  if (!(author instanceof Uint8Array) || author.length !== 32) throw new Error('bad author key')
  if (!(doc.sig instanceof Uint8Array) || doc.sig.length !== 64) throw new Error('bad sig size')
  if (!sodium.crypto_sign_verify_detached(doc.sig, signedMessage(doc), author)) {
    throw new Error('signature does not verify')
  }
  if (doc.type !== 'catalogue' && !stampOk(doc.sig, doc.pow, bits)) throw new Error('stamp short')
  return doc
}

/** Sign a record map (without sig/pow) with a libsodium secret key and stamp it. */
export function signRecord (fields, secretKey, { bits = stampBits() } = {}) {
  const sig = sodium.crypto_sign_detached(signedMessage(fields), secretKey)
  const doc = { ...fields, sig }
  if (fields.type !== 'catalogue') doc.pow = solveStamp(sig, bits)
  return pack(doc)
}

export function newListing (seller, { title, price, cur = 'IDR', cat = 'vehicles/bicycles', now }) {
  return {
    cat,
    cur,
    desc: 'signed by a stock js-libp2p node',
    exp: now + 30 * 86400,
    img: [],
    kind: 'sell',
    loc: 'Sleman',
    nonce: sodium.randombytes_buf(16),
    price,
    qty: 1,
    seller,
    seq: 1,
    tags: ['interop'],
    title,
    ts: now,
    type: 'listing',
    v: 1
  }
}

// -- Direct messages --------------------------------------------------------

const LETTER_DOMAIN = domain('p2pmarket/letter/v1')

/** Seal a letter [1, sender, recipient, id, sent, kind, body(bin), sig] to an
 * ed25519 recipient; return { id, envelope } (envelope = {box, to, v} map). */
/** What a letter's sender signs: the domain, then msgpack [sender, recipient, id, sent, kind, body]. */
export const letterMessage = (fields) => concat(LETTER_DOMAIN, pack(fields))

export function sealLetter (keys, recipient, kind, body, now) {
  const id = sodium.randombytes_buf(16)
  const fields = [keys.publicKey, recipient, id, now, kind, body]
  const sig = sodium.crypto_sign_detached(letterMessage(fields), keys.privateKey)
  const inner = pack([1, ...fields, sig])
  const box = sodium.crypto_box_seal(inner, sodium.crypto_sign_ed25519_pk_to_curve25519(recipient))
  return { id, envelope: pack({ box, to: recipient, v: 1 }) }
}

/** The letter bytes inside an envelope {box, to, v} sealed to ``keys``. */
export function openBox (data, keys) {
  const doc = decode(data)
  if (!equal(pack(doc), data) || Object.keys(doc).join(' ') !== 'box to v' || doc.v !== 1) {
    throw new Error('not a canonical envelope')
  }
  if (!equal(doc.to, keys.publicKey)) throw new Error('envelope for another key')
  return sodium.crypto_box_seal_open(doc.box,
    sodium.crypto_sign_ed25519_pk_to_curve25519(keys.publicKey),
    sodium.crypto_sign_ed25519_sk_to_curve25519(keys.privateKey))
}

/** Open an envelope sealed to ``keys`` and check its letter's signature. */
export function openEnvelope (data, keys) {
  const letter = decode(openBox(data, keys))
  if (!Array.isArray(letter) || letter.length !== 8 || letter[0] !== 1) throw new Error('not a letter')
  const [, sender, to, id, sent, kind, body, sig] = letter
  if (!equal(to, keys.publicKey)) throw new Error('letter names another recipient')
  if (!sodium.crypto_sign_verify_detached(sig, letterMessage([sender, to, id, sent, kind, body]), sender)) {
    throw new Error("letter's signature does not verify")
  }
  return { sender, id, sent, kind, body }
}

/** A frame: 4-byte big-endian length, then the bytes. */
export function frame (bytes) {
  const out = new Uint8Array(4 + bytes.length)
  new DataView(out.buffer).setUint32(0, bytes.length)
  out.set(bytes, 4)
  return out
}

export { concat, equal, utf8, decode }
