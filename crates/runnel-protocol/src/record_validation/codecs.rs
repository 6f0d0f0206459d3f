//! The codecs a batch's records may be compressed with, as streams: a reader that inflates a
//! payload (gzip, snappy in Xerial framing or raw, lz4 frame, zstd) and the recompressor that
//! writes a new payload in a topic's `compression.type`, as `kafka-protocol`'s encoders do
//! (gzip level 6, Xerial-framed snappy in 32 KiB blocks, lz4 level 4 with independent blocks,
//! zstd level 3), so recompressed batches are the same bytes as before this module.
//!
//! Readers end only where their stream ends: a truncated stream, or bytes after it, is an
//! error, so the codec's own checks (gzip's CRC-32 and size trailer, lz4's and zstd's frame
//! checksums) all run.

use std::io::{self, Read, Write};

use kafka_protocol::records::Compression;

use super::RecordValidationError;

/// A raw snappy block inflates at most this many times its compressed size: its densest
/// element, a copy with a 2-byte offset, writes 64 bytes from 3.
pub const SNAPPY_INFLATION_MAX: usize = 22;

/// The first 16 bytes of a Xerial-framed snappy stream (snappy-java's `SnappyOutputStream`,
/// what Kafka's Java producer writes): magic, version 1, compatible version 1. Then blocks,
/// each a big-endian u32 length and a raw snappy block.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's block size, used when writing.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// The largest window a zstd frame may declare: 2^23 bytes (8 MiB), what zstd's levels 1 to 19
/// use for inputs of unknown size (Kafka's Java producer at its default level 3: 2 MiB;
/// librdkafka, kafka-python and Go clients write frames of known size, whose windows are no
/// larger than the batch). The decoder fills its window as it inflates, so without this cap a
/// frame declaring zstd's default limit (2^27, which Kafka accepts) holds up to the inflated
/// bound in memory. Refused: Java producers set to `compression.zstd.level` 20-22.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

const GZIP_LEVEL: u32 = 6;
const LZ4_LEVEL: u32 = 4;
const ZSTD_LEVEL: i32 = 3;

/// A decoder found its stream would inflate past the bound before inflating it.
#[derive(Debug)]
struct InflatedPastBound;

impl std::fmt::Display for InflatedPastBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream declares more bytes than the bound")
    }
}

impl std::error::Error for InflatedPastBound {}

/// The name of codec `codec` and a reader inflating `payload` with it.
pub(super) fn inflater(
    codec: i16,
    payload: &[u8],
    inflated_bytes_max: usize,
) -> Result<(&'static str, Box<dyn Read + '_>), RecordValidationError> {
    let decompression =
        |codec: &'static str, error: io::Error| RecordValidationError::Decompression {
            codec,
            reason: error.to_string(),
        };
    Ok(match codec {
        1 => (
            "gzip",
            Box::new(flate2::bufread::MultiGzDecoder::new(payload)),
        ),
        2 if payload.starts_with(XERIAL_HEADER) => (
            "snappy",
            Box::new(XerialReader {
                rest: &payload[XERIAL_HEADER.len()..],
                block: Vec::new(),
                position: 0,
                decoder: snap::raw::Decoder::new(),
                inflated_bytes_max,
            }),
        ),
        2 => {
            let inflated = inflate_raw_snappy(payload, inflated_bytes_max)
                .map_err(|error| read_error("snappy", error, inflated_bytes_max))?;
            ("snappy", Box::new(io::Cursor::new(inflated)))
        }
        3 => {
            let decoder = lz4::Decoder::new(payload).map_err(|e| decompression("lz4", e))?;
            (
                "lz4",
                Box::new(Lz4Reader {
                    decoder: Some(decoder),
                }),
            )
        }
        4 => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| decompression("zstd", e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| decompression("zstd", e))?;
            ("zstd", Box::new(decoder))
        }
        codec => return Err(RecordValidationError::UnknownCodec { codec }),
    })
}

/// The error for a failed read from codec `codec`'s reader.
pub(super) fn read_error(
    codec: &'static str,
    error: io::Error,
    inflated_bytes_max: usize,
) -> RecordValidationError {
    let past_bound = error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<InflatedPastBound>().is_some());
    if past_bound {
        return RecordValidationError::InflatedTooLarge {
            bytes_max: inflated_bytes_max,
        };
    }
    RecordValidationError::Decompression {
        codec,
        reason: error.to_string(),
    }
}

/// Checks a raw snappy block's declared inflated size before anything is allocated for it.
fn snappy_inflated_bytes(block: &[u8], inflated_bytes_max: usize) -> Result<usize, io::Error> {
    let declared = snap::raw::decompress_len(block).map_err(io::Error::other)?;
    if declared > inflated_bytes_max {
        return Err(io::Error::other(InflatedPastBound));
    }
    if declared > block.len().saturating_mul(SNAPPY_INFLATION_MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a snappy block of {} bytes declares {declared} inflated bytes",
                block.len()
            ),
        ));
    }
    Ok(declared)
}

/// Inflates `block` into `into` (resized to its declared size).
fn inflate_snappy_block(
    decoder: &mut snap::raw::Decoder,
    block: &[u8],
    into: &mut Vec<u8>,
    inflated_bytes_max: usize,
) -> Result<(), io::Error> {
    let declared = snappy_inflated_bytes(block, inflated_bytes_max)?;
    into.clear();
    into.resize(declared, 0);
    let written = decoder.decompress(block, into).map_err(io::Error::other)?;
    into.truncate(written);
    Ok(())
}

/// Raw snappy (no framing, as librdkafka writes it) is one block: inflated whole.
fn inflate_raw_snappy(payload: &[u8], inflated_bytes_max: usize) -> Result<Vec<u8>, io::Error> {
    let mut inflated = Vec::new();
    inflate_snappy_block(
        &mut snap::raw::Decoder::new(),
        payload,
        &mut inflated,
        inflated_bytes_max,
    )?;
    Ok(inflated)
}

/// Xerial-framed snappy, inflated one block at a time.
struct XerialReader<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    position: usize,
    decoder: snap::raw::Decoder,
    inflated_bytes_max: usize,
}

impl XerialReader<'_> {
    fn next_block(&mut self) -> io::Result<()> {
        let truncated = |what: &str| io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string());
        let Some((length, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(truncated("a Xerial block length is truncated"));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(truncated("a Xerial block is truncated"));
        }
        let (block, rest) = rest.split_at(length);
        self.rest = rest;
        inflate_snappy_block(
            &mut self.decoder,
            block,
            &mut self.block,
            self.inflated_bytes_max,
        )?;
        self.position = 0;
        Ok(())
    }
}

impl Read for XerialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.block.len() {
            if self.rest.is_empty() {
                return Ok(0);
            }
            self.next_block()?;
        }
        let count = buf.len().min(self.block.len() - self.position);
        buf[..count].copy_from_slice(&self.block[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// An lz4 frame (Kafka's `KafkaLZ4BlockInputStream` format for magic 2: the standard frame).
/// The `lz4` crate's decoder reports a truncated frame as a clean end; this one checks, at
/// the end, that the frame's end mark was read and that no byte follows it.
struct Lz4Reader<'a> {
    decoder: Option<lz4::Decoder<&'a [u8]>>,
}

impl Read for Lz4Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(0);
        };
        let count = decoder.read(buf)?;
        if count > 0 || buf.is_empty() {
            return Ok(count);
        }
        let Some(decoder) = self.decoder.take() else {
            return Ok(0);
        };
        let (rest, finished) = decoder.finish();
        if finished.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the lz4 frame is truncated",
            ));
        }
        if !rest.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes follow the lz4 frame", rest.len()),
            ));
        }
        Ok(0)
    }
}

/// The target encoder of a recompression, writing after a copy of the original header.
pub(crate) struct Recompressor {
    encoder: Encoder,
    codec: &'static str,
    batch_bytes_max: usize,
}

enum Encoder {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// Boxed: snappy's encoder holds its 2 KiB hash table inline.
    Snappy(Box<XerialWriter>),
    Lz4(lz4::Encoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Recompressor {
    /// An encoder for `target` whose output starts with `header` (rewritten by the caller).
    pub(crate) fn new(
        target: Compression,
        header: &[u8],
        batch_bytes_max: usize,
    ) -> Result<Recompressor, RecordValidationError> {
        let out = header.to_vec();
        let failed = |codec: &'static str, error: io::Error| RecordValidationError::Compression {
            codec,
            reason: error.to_string(),
        };
        let (codec, encoder) = match target {
            Compression::None => ("none", Encoder::None(out)),
            Compression::Gzip => (
                "gzip",
                Encoder::Gzip(flate2::write::GzEncoder::new(
                    out,
                    flate2::Compression::new(GZIP_LEVEL),
                )),
            ),
            Compression::Snappy => ("snappy", Encoder::Snappy(Box::new(XerialWriter::new(out)))),
            Compression::Lz4 => (
                "lz4",
                Encoder::Lz4(
                    lz4::EncoderBuilder::new()
                        .level(LZ4_LEVEL)
                        .block_mode(lz4::BlockMode::Independent)
                        .build(out)
                        .map_err(|e| failed("lz4", e))?,
                ),
            ),
            Compression::Zstd => (
                "zstd",
                Encoder::Zstd(
                    zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)
                        .map_err(|e| failed("zstd", e))?,
                ),
            ),
        };
        Ok(Recompressor {
            encoder,
            codec,
            batch_bytes_max,
        })
    }

    /// Compresses the next inflated records bytes.
    pub(crate) fn write(&mut self, records: &[u8]) -> Result<(), RecordValidationError> {
        let written = match &mut self.encoder {
            Encoder::None(out) => {
                out.extend_from_slice(records);
                Ok(())
            }
            Encoder::Gzip(encoder) => encoder.write_all(records),
            Encoder::Snappy(encoder) => encoder.write(records),
            Encoder::Lz4(encoder) => encoder.write_all(records),
            Encoder::Zstd(encoder) => encoder.write_all(records),
        };
        written.map_err(|error| self.failed(error))?;
        let output_bytes = match &self.encoder {
            Encoder::None(out) => out.len(),
            Encoder::Gzip(encoder) => encoder.get_ref().len(),
            Encoder::Snappy(encoder) => encoder.out.len(),
            Encoder::Lz4(encoder) => encoder.writer().len(),
            Encoder::Zstd(encoder) => encoder.get_ref().len(),
        };
        self.check_size(output_bytes)
    }

    /// The whole new batch: the original header, then the compressed records.
    pub(crate) fn finish(self) -> Result<Vec<u8>, RecordValidationError> {
        let codec = self.codec;
        let failed = |error: io::Error| RecordValidationError::Compression {
            codec,
            reason: error.to_string(),
        };
        let out = match self.encoder {
            Encoder::None(out) => out,
            Encoder::Gzip(encoder) => encoder.finish().map_err(failed)?,
            Encoder::Snappy(encoder) => encoder.finish().map_err(failed)?,
            Encoder::Lz4(encoder) => {
                let (out, finished) = encoder.finish();
                finished.map_err(failed)?;
                out
            }
            Encoder::Zstd(encoder) => encoder.finish().map_err(failed)?,
        };
        let batch_bytes_max = self.batch_bytes_max.min(i32::MAX as usize);
        if out.len() > batch_bytes_max {
            return Err(RecordValidationError::RecompressedTooLarge {
                bytes_max: self.batch_bytes_max,
            });
        }
        Ok(out)
    }

    fn check_size(&self, output_bytes: usize) -> Result<(), RecordValidationError> {
        if output_bytes > self.batch_bytes_max {
            return Err(RecordValidationError::RecompressedTooLarge {
                bytes_max: self.batch_bytes_max,
            });
        }
        Ok(())
    }

    fn failed(&self, error: io::Error) -> RecordValidationError {
        RecordValidationError::Compression {
            codec: self.codec,
            reason: error.to_string(),
        }
    }
}

/// Xerial-framed snappy output in snappy-java's 32 KiB blocks.
struct XerialWriter {
    out: Vec<u8>,
    pending: Vec<u8>,
    encoder: snap::raw::Encoder,
}

impl XerialWriter {
    fn new(mut out: Vec<u8>) -> XerialWriter {
        out.extend_from_slice(XERIAL_HEADER);
        XerialWriter {
            out,
            pending: Vec::with_capacity(XERIAL_BLOCK_BYTES),
            encoder: snap::raw::Encoder::new(),
        }
    }

    fn write(&mut self, mut records: &[u8]) -> io::Result<()> {
        while !records.is_empty() {
            let room = XERIAL_BLOCK_BYTES - self.pending.len();
            let (now, later) = records.split_at(room.min(records.len()));
            self.pending.extend_from_slice(now);
            records = later;
            if self.pending.len() == XERIAL_BLOCK_BYTES {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        let start = self.out.len();
        let bound = snap::raw::max_compress_len(self.pending.len());
        self.out.resize(start + 4 + bound, 0);
        let written = self
            .encoder
            .compress(&self.pending, &mut self.out[start + 4..])
            .map_err(io::Error::other)?;
        self.out.truncate(start + 4 + written);
        self.out[start..start + 4].copy_from_slice(&(written as u32).to_be_bytes());
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        if !self.pending.is_empty() {
            self.flush_block()?;
        }
        Ok(self.out)
    }
}
