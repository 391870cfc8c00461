//! The keys a run writes, numbered and zero-padded, written in place into a reused buffer.

use anyhow::{bail, Result};

/// The keys a run writes: `<prefix>` then a `key_size`-digit zero-padded number, `0..space`.
/// Printable (unlike the Go tool's binary keys), so `etcdctl get --prefix /bench/` shows them.
#[derive(Clone)]
pub(crate) struct Keys {
    buffer: Vec<u8>,
    digits: usize,
    space: u64,
    sequential: bool,
    random: u64,
}

impl Keys {
    pub(crate) fn new(prefix: &str, key_size: u32, space: u64, sequential: bool) -> Result<Keys> {
        let digits = key_size as usize;
        if digits < 20 && 10u64.pow(digits as u32) < space {
            bail!("--key-size {key_size} has room for 10^{key_size} keys, fewer than --key-space-size {space}");
        }
        let mut buffer = prefix.as_bytes().to_vec();
        buffer.resize(prefix.len() + digits, b'0');
        Ok(Keys {
            buffer,
            digits,
            space,
            sequential,
            random: 0,
        })
    }

    /// This worker's copy, with its own buffer and random sequence.
    pub(crate) fn for_worker(&self, worker: usize) -> Keys {
        // A tiny xorshift generator, seeded from the clock and the worker number: enough to pick keys,
        // and no `rand` dependency.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64);
        let mut keys = self.clone();
        keys.random = (nanos ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        keys
    }

    /// The key for request number `n`: key `n` with --sequential-keys (so the workers together write
    /// 0, 1, 2, ... as etcd's tool does), otherwise a random one from the worker's own generator.
    pub(crate) fn key_for(&mut self, n: u64) -> &[u8] {
        let i = if self.sequential {
            n
        } else {
            self.random ^= self.random << 13;
            self.random ^= self.random >> 7;
            self.random ^= self.random << 17;
            self.random
        };
        self.key(i)
    }

    /// Key number `i % space`, written into the reused buffer.
    pub(crate) fn key(&mut self, i: u64) -> &[u8] {
        let mut n = i % self.space;
        let end = self.buffer.len();
        for slot in self.buffer[end - self.digits..].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &self.buffer
    }
}
