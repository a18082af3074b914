//! Classic pcap files (the libpcap format tcpdump and Wireshark read), with
//! nanosecond timestamps and Ethernet link type: a writer for captures and a
//! reader for tests and tools. The reader checks every length it reads.

use std::io::{self, Read, Write};

/// Magic number of a nanosecond-resolution pcap file.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Magic number of a microsecond-resolution pcap file.
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest snap length written or accepted.
pub const MAX_SNAPLEN: u32 = 262_144;

/// Writes frames to a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header; frames are cut to `snaplen` bytes.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let snaplen = snaplen.clamp(1, MAX_SNAPLEN);
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&snaplen.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one frame seen at `timestamp_ns` whose length on the wire was
    /// `original_len`.
    pub fn write_frame(
        &mut self,
        timestamp_ns: u64,
        original_len: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let kept = data.len().min(self.snaplen as usize);
        let mut record = Vec::with_capacity(16 + kept);
        record.extend_from_slice(&((timestamp_ns / 1_000_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&((timestamp_ns % 1_000_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&(kept as u32).to_le_bytes());
        record.extend_from_slice(&original_len.max(kept as u32).to_le_bytes());
        record.extend_from_slice(&data[..kept]);
        self.out.write_all(&record)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One frame read from a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapFrame {
    /// Time in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Length on the wire.
    pub original_len: u32,
    /// The bytes captured.
    pub data: Vec<u8>,
}

/// Why a pcap file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading failed.
    #[error("read: {0}")]
    Io(#[from] io::Error),
    /// Not a pcap file, or one this reader does not handle.
    #[error("not a pcap file this reader handles: {0}")]
    Format(String),
}

/// Reads a whole pcap file from bytes (either byte order, micro- or nanosecond
/// timestamps). A truncated last record is an error.
pub fn read_all(bytes: &[u8]) -> Result<(u32, Vec<PcapFrame>), PcapError> {
    let header = bytes.get(..24).ok_or_else(|| {
        PcapError::Format(format!("{} bytes is shorter than a header", bytes.len()))
    })?;
    let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let magic_be = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let (little, nanos) = match (magic_le, magic_be) {
        (MAGIC_NANOS, _) => (true, true),
        (MAGIC_MICROS, _) => (true, false),
        (_, MAGIC_NANOS) => (false, true),
        (_, MAGIC_MICROS) => (false, false),
        _ => return Err(PcapError::Format(format!("magic {magic_le:#010x}"))),
    };
    let word = |b: &[u8]| -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = word(&header[20..24]);
    let mut frames = Vec::new();
    let mut at = 24usize;
    while at < bytes.len() {
        let record = bytes
            .get(at..at + 16)
            .ok_or_else(|| PcapError::Format(format!("record header at byte {at} is truncated")))?;
        let seconds = u64::from(word(&record[0..4]));
        let fraction = u64::from(word(&record[4..8]));
        let caplen = word(&record[8..12]) as usize;
        let original_len = word(&record[12..16]);
        if caplen > MAX_SNAPLEN as usize {
            return Err(PcapError::Format(format!(
                "record at byte {at} claims {caplen} bytes"
            )));
        }
        let data = bytes
            .get(at + 16..at + 16 + caplen)
            .ok_or_else(|| PcapError::Format(format!("record at byte {at} is truncated")))?;
        let timestamp_ns = seconds * 1_000_000_000 + if nanos { fraction } else { fraction * 1000 };
        frames.push(PcapFrame {
            timestamp_ns,
            original_len,
            data: data.to_vec(),
        });
        at += 16 + caplen;
    }
    Ok((linktype, frames))
}

/// Reads a pcap file from a reader.
pub fn read_from(mut input: impl Read) -> Result<(u32, Vec<PcapFrame>), PcapError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    read_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_snaplen() {
        let mut out = Vec::new();
        let mut writer = PcapWriter::new(&mut out, 10).unwrap();
        writer
            .write_frame(1_700_000_000_123_456_789, 14, &[0xaa; 14])
            .unwrap();
        writer.write_frame(5, 4, &[1, 2, 3, 4]).unwrap();
        writer.flush().unwrap();
        let (linktype, frames) = read_all(&out).unwrap();
        assert_eq!(linktype, LINKTYPE_ETHERNET);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].timestamp_ns, 1_700_000_000_123_456_789);
        assert_eq!((frames[0].original_len, frames[0].data.len()), (14, 10));
        assert_eq!(frames[1].data, vec![1, 2, 3, 4]);
    }

    #[test]
    fn reads_microsecond_big_endian_files() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC_MICROS.to_be_bytes());
        bytes.extend_from_slice(&[
            0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1,
        ]);
        bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0x42]);
        let (_, frames) = read_all(&bytes).unwrap();
        assert_eq!(frames[0].timestamp_ns, 1_000_002_000);
        assert_eq!(frames[0].data, vec![0x42]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(read_all(&[0u8; 10]).is_err());
        assert!(read_all(&[0u8; 24]).is_err());
        let mut out = Vec::new();
        PcapWriter::new(&mut out, 100)
            .unwrap()
            .write_frame(0, 3, &[1, 2, 3])
            .unwrap();
        assert!(read_all(&out[..out.len() - 1]).is_err(), "truncated record");
        let mut huge = out[..24].to_vec();
        huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        assert!(read_all(&huge).is_err(), "absurd length");
    }
}
