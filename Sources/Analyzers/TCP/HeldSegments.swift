/// Fixed-size blocks for the out-of-order bytes a worker holds, carved from one reservation made at start.
///
/// The reservation is address space only: a block's pages become resident when first written, and freed
/// blocks are reused last-in first-out, so the resident size follows the peak of bytes held (never more
/// than the worker's bound) and no allocation happens per held segment.
final class HeldBlockPool {
    static let blockSize = 4096
    let blockCount: Int
    private let memory: UnsafeMutableRawPointer
    private var free: [Int32] = []
    /// Blocks never handed out yet (index of the first).
    private var fresh: Int32 = 0
    private(set) var blocksInUse = 0

    init(maxBytes: Int) {
        blockCount = max(1, min(Int(Int32.max), maxBytes / HeldBlockPool.blockSize))
        memory = .allocate(byteCount: blockCount * HeldBlockPool.blockSize, alignment: HeldBlockPool.blockSize)
    }

    deinit { memory.deallocate() }

    /// A free block, or nil when the pool is exhausted.
    func take() -> Int32? {
        let b: Int32
        if let f = free.popLast() {
            b = f
        } else if Int(fresh) < blockCount {
            b = fresh
            fresh += 1
        } else {
            return nil
        }
        blocksInUse += 1
        return b
    }

    func give(_ b: Int32) {
        free.append(b)
        blocksInUse -= 1
    }

    func bytes(_ b: Int32) -> UnsafeMutableRawPointer { memory + Int(b) * HeldBlockPool.blockSize }
}

/// The out-of-order bytes held for one direction of a flow, waiting for the hole before them to fill.
///
/// Sequence space from `base` is cut into pool blocks (allocated where bytes are held). `ranges` lists
/// what is held as sorted, disjoint, non-adjacent offsets from `base`: adjacent and overlapping segments
/// coalesce, so a flood of small segments costs block bytes, not one record each. Overlaps keep the
/// bytes first seen. Bytes are drained from the front; whole blocks behind the stream go back to the pool.
/// Offsets stay below the per-flow window (far below 2^31), so their arithmetic cannot overflow.
struct HeldStream {
    struct Range { var start: Int; var end: Int }

    /// Sequence number of offset 0.
    private(set) var base: UInt32
    /// Pool block per `blockSize` bytes from `base`; -1 where nothing is held.
    private(set) var blocks: [Int32] = []
    private(set) var ranges: [Range] = []
    private(set) var blocksInUse = 0

    /// Per-direction bookkeeping beyond the blocks: this value, the two arrays (header and allocator
    /// rounding) and their elements, and its share of the reassembler's table entry.
    static let fixedOverhead = 160

    init(base: UInt32) { self.base = base }

    var isEmpty: Bool { ranges.isEmpty }
    /// Sequence number of the first held byte.
    var firstHeld: UInt32? { ranges.first.map { base &+ UInt32($0.start) } }

    /// Real memory of this direction's held bytes: whole blocks plus bookkeeping.
    var memory: Int {
        blocksInUse * HeldBlockPool.blockSize + blocks.capacity * MemoryLayout<Int32>.stride
            + ranges.capacity * MemoryLayout<Range>.stride + HeldStream.fixedOverhead
    }

    /// What storing `[offset, offset+count)` would add: new blocks, and the number of ranges afterwards.
    func cost(offset: Int, count: Int) -> (blocks: Int, ranges: Int) {
        let bs = HeldBlockPool.blockSize
        var newBlocks = 0
        var k = offset / bs
        let last = (offset + count - 1) / bs
        while k <= last {
            if k >= blocks.count || blocks[k] < 0 { newBlocks += 1 }
            k += 1
        }
        let (i, j) = touching(offset, offset + count)
        return (newBlocks, ranges.count - (j - i) + 1)
    }

    /// Indices `i..<j` of the ranges that overlap or touch `[start, end)`.
    private func touching(_ start: Int, _ end: Int) -> (Int, Int) {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let m = (lo + hi) / 2
            if ranges[m].end < start { lo = m + 1 } else { hi = m }
        }
        var j = lo
        while j < ranges.count && ranges[j].start <= end { j += 1 }
        return (lo, j)
    }

    /// Stores `data` at `offset` (after `cost` said it fits). Returns the bytes already held there.
    mutating func store(_ data: UnsafeRawBufferPointer, offset: Int, pool: HeldBlockPool) -> Int {
        let end = offset + data.count
        let (i, j) = touching(offset, end)
        // Copy the parts no held range covers.
        var pos = offset
        var already = 0
        var r = i
        while pos < end {
            var pieceEnd = end
            if r < j {
                let held = ranges[r]
                if held.start <= pos {
                    let skipTo = min(end, held.end)
                    if skipTo > pos { already += skipTo - pos }
                    pos = max(pos, skipTo)
                    r += 1
                    continue
                }
                pieceEnd = min(end, held.start)
            }
            copy(data, from: pos - offset, to: pos, count: pieceEnd - pos, pool: pool)
            pos = pieceEnd
        }
        let merged = i < j ? Range(start: min(offset, ranges[i].start), end: max(end, ranges[j - 1].end)) : Range(start: offset, end: end)
        ranges.replaceSubrange(i..<j, with: CollectionOfOne(merged))
        return already
    }

    private mutating func copy(_ data: UnsafeRawBufferPointer, from src: Int, to dst: Int, count: Int, pool: HeldBlockPool) {
        let bs = HeldBlockPool.blockSize
        var done = 0
        while done < count {
            let at = dst + done
            let k = at / bs
            if k >= blocks.count { blocks.append(contentsOf: repeatElement(-1, count: k + 1 - blocks.count)) }
            if blocks[k] < 0 {
                // `cost` was checked against the pool's bounds, so a block is there.
                guard let b = pool.take() else { return }
                blocks[k] = b
                blocksInUse += 1
            }
            let n = min(count - done, bs - at % bs)
            (pool.bytes(blocks[k]) + at % bs).copyMemory(from: data.baseAddress! + src + done, byteCount: n)
            done += n
        }
    }

    /// The held bytes at sequence `next` that lie in one block (nil when `next` is before the first held
    /// byte). Ranges wholly behind `next` are dropped first; their sizes are added to `behind`. Blocks
    /// wholly behind `next` return to the pool on the following call (the returned bytes stay valid
    /// until then).
    mutating func chunk(at next: UInt32, pool: HeldBlockPool, behind: inout Int) -> UnsafeRawBufferPointer? {
        releaseBlocks(before: next, pool: pool)
        let pos = Int(Int32(bitPattern: next &- base))
        guard pos >= 0 else { return nil }
        while let first = ranges.first, first.end <= pos {
            behind += first.end - first.start
            ranges.removeFirst()
        }
        guard let first = ranges.first, first.start <= pos else { return nil }
        let bs = HeldBlockPool.blockSize
        guard pos / bs < blocks.count, blocks[pos / bs] >= 0 else { return nil }
        let n = min(first.end, (pos / bs + 1) * bs) - pos
        return UnsafeRawBufferPointer(start: pool.bytes(blocks[pos / bs]) + pos % bs, count: n)
    }

    /// Returns the blocks wholly behind sequence `next` to the pool and moves `base` past them.
    mutating func releaseBlocks(before next: UInt32, pool: HeldBlockPool) {
        let pos = Int(Int32(bitPattern: next &- base))
        let bs = HeldBlockPool.blockSize
        guard pos >= bs else { return }
        let k = min(pos / bs, blocks.count)
        guard k > 0 else { return }
        for b in blocks[..<k] where b >= 0 {
            pool.give(b)
            blocksInUse -= 1
        }
        blocks.removeFirst(k)
        let shift = k * bs
        base &+= UInt32(shift)
        for r in ranges.indices {
            ranges[r].start = max(0, ranges[r].start - shift)
            ranges[r].end = max(0, ranges[r].end - shift)
        }
    }

    /// Gives every block back (the direction is done, or its hole will never fill).
    mutating func releaseAll(pool: HeldBlockPool) {
        for b in blocks where b >= 0 { pool.give(b) }
        blocks = []
        ranges = []
        blocksInUse = 0
    }
}
