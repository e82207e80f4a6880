// libp2p 3's dependencies (it-queue, p-retry) are written for Node >= 22 and
// call Promise.withResolvers, which Node 20 lacks. This standard-conforming
// polyfill (ES2024) lets the same stock packages run on Node 20. Imported first.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
