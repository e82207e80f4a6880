// A stock js-libp2p node that joins a network of p2pmarket daemons.
//
// Driven by its parent (tests/interop/test_js_interop.py) over stdin/stdout: one
// JSON command a line in, one JSON answer a line out ({"ok": true, ...} or
// {"ok": false, "error": "..."}). First line out: {"ready": true, "peer", "addrs"}.
// Everything network-side goes through stock APIs: pubsub.subscribe/publish,
// dht.get, dialProtocol. The p2pmarket formats are in records.mjs.

import './node20.mjs'
import { createInterface } from 'node:readline'
import { readFileSync, existsSync } from 'node:fs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { base58btc } from 'multiformats/bases/base58'
import * as R from './records.mjs'
import { checkVectors } from './vectors.mjs'

const { sodium } = R
const LISTINGS = 'p2pmarket/1/listings'
const PROFILES = 'p2pmarket/1/profiles'
const REVIEWS = 'p2pmarket/1/reviews'
const DM_PROTOCOL = '/p2pmarket/dm/1.0.0'
const now = () => Math.floor(Date.now() / 1000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// One ed25519 seed gives both the libp2p host key and the record-signing key,
// as in p2pmarket: the peer id is the seller id.
const seed = sodium.randombytes_buf(32)
const keys = sodium.crypto_sign_seed_keypair(seed)

/** GossipSub message id: BLAKE2b-160 over topic (UTF-8) || 0x00 || data. */
const msgIdFn = (msg) => R.messageId(msg.topic, msg.data)

// DHT validators and selectors for our namespaces (kad-dht's stock options).
const validate = (bind) => async (key, value) => {
  const doc = R.verifyRecord(value)
  if (new TextDecoder().decode(key) !== bind(doc)) throw new Error('record not bound to its key')
}
const bySeq = (_key, values) => {
  let best = 0
  let bestRank = null
  values.forEach((value, i) => {
    const doc = R.decode(value)
    const rank = [doc.seq, doc.type === 'tombstone' ? 1 : 0, Buffer.from(value)]
    const better = bestRank === null || rank[0] > bestRank[0] ||
      (rank[0] === bestRank[0] && (rank[1] > bestRank[1] ||
        (rank[1] === bestRank[1] && Buffer.compare(rank[2], bestRank[2]) > 0)))
    if (better) { best = i; bestRank = rank }
  })
  return best
}

const node = await createLibp2p({
  privateKey: await generateKeyPairFromSeed('Ed25519', seed),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', msgIdFn, emitSelf: false }),
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: true,
      peerInfoMapper: passthroughMapper, // loopback addresses are fine here
      validators: {
        'p2pmarket-listing': validate((doc) => R.listingKey(R.listingId(doc.seller, doc.nonce))),
        'p2pmarket-catalogue': validate((doc) => R.catalogueKey(doc.seller))
      },
      selectors: { 'p2pmarket-listing': bySeq, 'p2pmarket-catalogue': bySeq }
    })
  }
})

// Gossip as it arrives: every message, verified as a receiver must.
const received = []
node.services.pubsub.addEventListener('message', (event) => {
  const msg = event.detail
  const entry = { topic: msg.topic, from: msg.from?.toString(), type: msg.type }
  try {
    const doc = R.verifyRecord(msg.data)
    Object.assign(entry, { valid: true, record: describe(doc) })
  } catch (err) {
    Object.assign(entry, { valid: false, error: String(err.message ?? err) })
  }
  received.push(entry)
})
for (const topic of [LISTINGS, PROFILES, REVIEWS]) node.services.pubsub.subscribe(topic)

function describe (doc) {
  const out = { type: doc.type, seq: doc.seq, ts: doc.ts }
  if (doc.type === 'listing' || doc.type === 'tombstone') {
    out.id = R.b32(R.listingId(doc.seller, doc.nonce))
    out.seller = peerIdOf(doc.seller)
  }
  if (doc.type === 'listing') Object.assign(out, { title: doc.title, price: doc.price, cur: doc.cur, cat: doc.cat, qty: doc.qty })
  if (doc.type === 'catalogue') {
    out.seller = peerIdOf(doc.seller)
    out.items = doc.items.map(([id, seq]) => [R.b32(id), seq])
  }
  return out
}

// The peer id of an ed25519 key, the libp2p way (identity multihash of its protobuf).
function peerIdOf (publicKey) {
  const proto = R.concat(new Uint8Array([0x08, 0x01, 0x12, 0x20]), publicKey)
  const mh = R.concat(new Uint8Array([0x00, proto.length]), proto)
  return peerIdFromString(base58(mh)).toString()
}
const base58 = (bytes) => base58btc.baseEncode(bytes)

const keyOfPeer = (peer) => peerIdFromString(peer).publicKey.raw

async function until (check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const got = await check()
    if (got) return got
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

/** Read one frame (4-byte big-endian length + bytes) from a libp2p 3 stream. */
async function readFrame (stream, max) {
  let buffer = new Uint8Array(0)
  for await (const chunk of stream) {
    buffer = R.concat(buffer, chunk.subarray())
    if (buffer.length >= 4) {
      const size = new DataView(buffer.buffer, buffer.byteOffset).getUint32(0)
      if (size > max) throw new Error(`frame of ${size} bytes`)
      if (buffer.length >= 4 + size) return buffer.subarray(4, 4 + size)
    }
  }
  throw new Error(`stream ended after ${buffer.length} bytes, without a whole frame`)
}

const commands = {
  async dial ({ addr }) {
    const conn = await node.dial(multiaddr(addr))
    return { peer: conn.remotePeer.toString() }
  },

  /** Wait until ``peers`` are in our mesh for ``topic`` (so a publish reaches them). */
  async mesh ({ topic = LISTINGS, peers, timeout = 15000 }) {
    await until(() => peers.every((p) => node.services.pubsub.getMeshPeers(topic).includes(p)),
      timeout, `${peers} in the mesh of ${topic}`)
    return { mesh: node.services.pubsub.getMeshPeers(topic) }
  },

  /** Wait for a gossip record whose title (or id) matches, verified. */
  async wait_gossip ({ title, id, timeout = 15000 }) {
    const hit = await until(() => received.find((m) => m.record &&
      (title === undefined || m.record.title === title) && (id === undefined || m.record.id === id)),
    timeout, `gossip of ${title ?? id}`)
    return { message: hit, all: received.length }
  },

  received () { return { received } },

  /** kad-dht get of a key; every value it yields passed our validator (stock
   * kad-dht drops the others). Poll until one comes or time runs out. */
  async dht_get ({ key, timeout = 20000 }) {
    const bytes = R.utf8(key)
    const found = await until(async () => {
      const values = []
      try {
        for await (const event of node.services.dht.get(bytes, { signal: AbortSignal.timeout(5000) })) {
          if (event.name === 'VALUE') values.push({ from: event.from.toString(), value: event.value })
        }
      } catch (err) {
        // NotFound and timeouts: try again until the deadline
      }
      return values.length ? values : null
    }, timeout, `a DHT value under ${key}`)
    // Peers may hold different versions: the namespace's selector picks (highest seq).
    const best = found[bySeq(bytes, found.map(({ value }) => value))]
    return {
      best: describe(R.verifyRecord(best.value)),
      values: found.map(({ from, value }) => ({ from, record: describe(R.verifyRecord(value)) }))
    }
  },

  listing_key ({ seller_peer, id }) {
    return { listing: id && `/p2pmarket-listing/${id}`, catalogue: seller_peer && R.catalogueKey(keyOfPeer(seller_peer)) }
  },

  /** Sign (and stamp) a listing with this node's key and publish it on the
   * market-wide topic. ``corrupt``: change the title after signing (a bad
   * signature, stamp still fine over it). */
  async publish_listing ({ title, price = 125000, corrupt = false }) {
    const fields = R.newListing(keys.publicKey, { title, price, now: now() })
    let data = R.signRecord(fields, keys.privateKey)
    if (corrupt) {
      const doc = R.decode(data)
      doc.title = title + ' (altered)'
      data = R.pack(doc)
    }
    const id = R.b32(R.listingId(keys.publicKey, fields.nonce))
    const result = await node.services.pubsub.publish(LISTINGS, data)
    return { id, recipients: result.recipients.map(String) }
  },

  /** Seal a text letter to ``peer`` and deliver it on /p2pmarket/dm/1.0.0; open
   * and check the receipt the recipient answers with. */
  async send_dm ({ peer, text }) {
    const recipient = keyOfPeer(peer)
    const { id, envelope } = R.sealLetter(keys, recipient, 'text', R.utf8(text), now())
    const stream = await node.dialProtocol(peerIdFromString(peer), DM_PROTOCOL)
    stream.send(R.frame(envelope))
    const answer = await readFrame(stream, 64 * 1024)
    await stream.close()
    const receipt = R.openEnvelope(answer, keys)
    if (!R.equal(receipt.sender, recipient)) throw new Error('receipt from someone else')
    if (receipt.kind !== 'receipt') throw new Error(`answer of kind ${receipt.kind}`)
    const pairs = R.decode(receipt.body)
    const acked = pairs.some(([mid, state]) => R.equal(mid, id) && state === 2)
    return { id: R.hex(id), receipt: pairs.map(([mid, state]) => [R.hex(mid), state]), acked }
  },

  vectors ({ path }) { return checkVectorsAt(path) },

  async stop () {
    await node.stop()
    setTimeout(() => process.exit(0), 10)
    return {}
  }
}

/** docs/test-vectors.json, checked with this program's own code (vectors.mjs). */
async function checkVectorsAt (path) {
  if (!existsSync(path)) return { present: false }
  return { present: true, checks: await checkVectors(JSON.parse(readFileSync(path, 'utf8'))) }
}

console.log(JSON.stringify({ ready: true, peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) }))

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const { cmd, ...args } = JSON.parse(line)
    if (!(cmd in commands)) throw new Error(`unknown command ${cmd}`)
    answer = { ok: true, ...(await commands[cmd](args)) }
  } catch (err) {
    answer = { ok: false, error: String(err?.stack ?? err) }
  }
  console.log(JSON.stringify(answer))
}
await node.stop()
process.exit(0)
