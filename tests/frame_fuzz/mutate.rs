//! The fuzzer's random source and its mutations of seed frames.
//!
//! [`SplitMix64`] is the whole RNG: seeded, deterministic, no crate. [`mutated_frame`] turns a
//! seed into the bytes written to the socket, size prefix included, with one to four of the
//! mutations that reach a decoder's weak spots: bit flips, bytes overwritten with 0x00, 0xff,
//! 0x7f or 0x80, an i32, i16 or unsigned-varint field replaced by a huge value (what an array
//! count or a length would claim), truncation, a splice with another seed, inserted or deleted
//! bytes, and a size prefix that disagrees with the body.

use super::corpus::Seed;

/// Steele, Lea and Flood's SplitMix64: one u64 of state, full period.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What a mutated frame announces about itself.
pub struct Mutated {
    /// The bytes to write, size prefix included.
    pub bytes: Vec<u8>,
    /// The size prefix is larger than what follows: the broker waits for more.
    pub announces_more: bool,
}

/// Values that counts and lengths are replaced with.
const HUGE_I32: [[u8; 4]; 4] = [
    [0x7f, 0xff, 0xff, 0xff],
    [0xff, 0xff, 0xff, 0xfe],
    [0x40, 0x00, 0x00, 0x00],
    [0x00, 0x10, 0x00, 0x00],
];
const HUGE_VARINTS: [&[u8]; 3] = [
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0x80, 0x80, 0x80, 0x80, 0x08],
];

/// A mutation of `seeds[index]` (or the seed itself, unmutated, one time in ten).
pub fn mutated_frame(rng: &mut SplitMix64, seeds: &[Seed], index: usize) -> Mutated {
    let mut frame = seeds[index].frame.clone();
    if !rng.chance(10) {
        for _ in 0..1 + rng.below(4) {
            mutate_body(rng, seeds, &mut frame);
        }
    }
    let mut size = frame.len() as i32;
    let mut announces_more = false;
    if rng.chance(4) {
        // A size prefix that lies: smaller (the rest reads as the next frame's start) or
        // larger (the broker waits for bytes that come from the next frame, or never).
        let delta = 1 + rng.below(16) as i32;
        if rng.chance(50) {
            size = (size - delta).max(0);
        } else {
            size += delta;
            announces_more = true;
        }
    }
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    Mutated {
        bytes,
        announces_more,
    }
}

/// A position to mutate: mostly after the api key and version (so that the frame still
/// reaches a body decoder), sometimes anywhere.
fn position(rng: &mut SplitMix64, frame: &[u8]) -> Option<usize> {
    if frame.is_empty() {
        return None;
    }
    if frame.len() > 4 && rng.chance(90) {
        Some(4 + rng.below(frame.len() - 4))
    } else {
        Some(rng.below(frame.len()))
    }
}

fn overwrite(frame: &mut [u8], at: usize, value: &[u8]) {
    for (offset, byte) in value.iter().enumerate() {
        if let Some(slot) = frame.get_mut(at + offset) {
            *slot = *byte;
        }
    }
}

fn mutate_body(rng: &mut SplitMix64, seeds: &[Seed], frame: &mut Vec<u8>) {
    let Some(at) = position(rng, frame) else {
        return;
    };
    match rng.below(100) {
        0..=24 => frame[at] ^= 1 << rng.below(8),
        25..=44 => frame[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
        45..=59 => overwrite(frame, at, &HUGE_I32[rng.below(HUGE_I32.len())]),
        60..=64 => overwrite(frame, at, &[0x7f, 0xff]),
        65..=74 => overwrite(frame, at, HUGE_VARINTS[rng.below(HUGE_VARINTS.len())]),
        75..=82 => frame.truncate(at),
        83..=90 => {
            let other = &seeds[rng.below(seeds.len())].frame;
            let from = rng.below(other.len());
            frame.truncate(at);
            frame.extend_from_slice(&other[from..]);
        }
        91..=95 => {
            let length = 1 + rng.below(8);
            let end = (at + length).min(frame.len());
            frame.drain(at..end);
        }
        _ => {
            let length = 1 + rng.below(8);
            let inserted: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
            frame.splice(at..at, inserted);
        }
    }
}
