//! Many byte streams that grow at their ends, kept in one buffer: each
//! stream is a chain of fixed-size blocks. The metrics encoder keeps every
//! series' encoded samples here while a frame is built (see `metrics.rs`),
//! for a cost of [`BLOCK`] + 4 bytes a block and no allocation per series:
//! thousands of short streams would pay more in `Vec` headers and
//! allocator rounding than they hold.

/// Bytes in a block. A steady series' sample is two bytes, so a series of
/// one scrape fits one block and one of ten scrapes two.
pub(super) const BLOCK: usize = 16;

/// No block: the end of a chain, or of the free list.
const NONE: u32 = u32::MAX;

/// One stream: where its chain starts and ends, and how full its last block
/// is. Empty streams have no block.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stream {
    head: u32,
    tail: u32,
    /// Bytes used in the tail block, 1..=[`BLOCK`].
    fill: u8,
}

impl Stream {
    pub(super) const EMPTY: Stream = Stream {
        head: NONE,
        tail: NONE,
        fill: 0,
    };
}

/// The blocks of every stream.
///
/// Block numbers are `u32`: the builder takes at most `Builder::MAX_RECORDS`
/// (2^30) records, a sample is at most 20 bytes here (a 10-byte timestamp
/// varint and a 9-byte XOR value or a 10-byte decimal varint), so the blocks
/// of all streams number under 2^30 × (20 / 16 + 1) < 2^32.
#[derive(Debug)]
pub(super) struct Chunks {
    data: Vec<u8>,
    /// Per block: the next block of its chain (or of the free list).
    next: Vec<u32>,
    /// The first block of the free list: blocks of streams that were
    /// [`Chunks::free`]d, used again before new ones.
    free: u32,
}

impl Default for Chunks {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            next: Vec::new(),
            free: NONE,
        }
    }
}

impl Chunks {
    /// Appends `bytes` to `stream`.
    pub(super) fn append(&mut self, stream: &mut Stream, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if stream.head == NONE || usize::from(stream.fill) == BLOCK {
                let block = self.allocate();
                if stream.head == NONE {
                    stream.head = block;
                } else {
                    self.next[stream.tail as usize] = block;
                }
                stream.tail = block;
                stream.fill = 0;
            }
            let fill = usize::from(stream.fill);
            let n = bytes.len().min(BLOCK - fill);
            let at = stream.tail as usize * BLOCK + fill;
            self.data[at..at + n].copy_from_slice(&bytes[..n]);
            stream.fill += n as u8;
            bytes = &bytes[n..];
        }
    }

    fn allocate(&mut self) -> u32 {
        if self.free != NONE {
            let block = self.free;
            self.free = self.next[block as usize];
            self.next[block as usize] = NONE;
            return block;
        }
        let block = self.next.len() as u32;
        self.next.push(NONE);
        self.data.resize(self.data.len() + BLOCK, 0);
        block
    }

    /// Appends `stream`'s bytes to `out`.
    pub(super) fn read(&self, stream: &Stream, out: &mut Vec<u8>) {
        let mut block = stream.head;
        while block != NONE {
            let at = block as usize * BLOCK;
            if block == stream.tail {
                out.extend_from_slice(&self.data[at..at + usize::from(stream.fill)]);
                return;
            }
            out.extend_from_slice(&self.data[at..at + BLOCK]);
            block = self.next[block as usize];
        }
    }

    /// Empties `stream`, giving its blocks to the free list.
    pub(super) fn free(&mut self, stream: &mut Stream) {
        if stream.head != NONE {
            // The chain is linked head to tail already: hang the free list
            // after its tail.
            self.next[stream.tail as usize] = self.free;
            self.free = stream.head;
        }
        *stream = Stream::EMPTY;
    }

    /// Frees every stream at once, keeping the buffers.
    pub(super) fn clear(&mut self) {
        self.data.clear();
        self.next.clear();
        self.free = NONE;
    }

    /// The memory the blocks take: those in use, or with `held` the room
    /// the buffers have.
    pub(super) fn bytes(&self, held: bool) -> usize {
        if held {
            self.data.capacity() + self.next.capacity() * size_of::<u32>()
        } else {
            self.data.len() + self.next.len() * size_of::<u32>()
        }
    }
}
