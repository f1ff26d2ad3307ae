//! Pieces of the exposition compressed once each and joined into one gzip stream without
//! compressing again.
//!
//! Each [`Piece`] is raw deflate (RFC 1951) that ends in a sync flush: its blocks are not final
//! and it ends on a byte boundary, and it never refers back to bytes before its own start. So
//! pieces concatenate into valid deflate data, like pigz's parallel blocks. A gzip stream
//! (RFC 1952) is then a fixed header, the pieces, an empty final block, and a trailer with the
//! CRC-32 and length of the whole text. The CRC is combined from the pieces' own
//! (`crc32fast::Hasher::combine`), so the text never has to exist in one buffer. A portal that did
//! not change keeps its compressed per-user piece from one rendering to the next. No compression is
//! repeated, and the cached exposition takes its compressed size in memory, not its text size.

use std::io::Write as _;

use bytes::{Bytes, BytesMut};

/// The gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty final block with fixed Huffman codes (BFINAL=1, BTYPE=01, end-of-block), which ends
/// the deflate data after the last sync-flushed piece.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Compressed text that joins with others: raw deflate ending in a sync flush, with the CRC-32 and
/// length of its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Piece {
    bytes: Bytes,
    crc: u32,
    len: u64,
}

impl Piece {
    /// Compresses `text` at the fast level into a piece of its own.
    pub fn compress(text: &[u8]) -> Piece {
        let mut writer = PieceWriter::new();
        writer.write(text);
        writer.finish()
    }

    /// Joins pieces into one, in order (one copy of the compressed bytes, nothing recompressed).
    pub fn join<'a>(pieces: impl IntoIterator<Item = &'a Piece> + Clone) -> Piece {
        let size = pieces.clone().into_iter().map(|p| p.bytes.len()).sum();
        let mut bytes = BytesMut::with_capacity(size);
        let mut crc = crc32fast::Hasher::new();
        for piece in pieces {
            bytes.extend_from_slice(&piece.bytes);
            crc.combine(&piece.hasher());
        }
        Piece {
            bytes: bytes.freeze(),
            len: crc.total_len(),
            crc: crc.finalize(),
        }
    }

    /// Length of the text, in bytes.
    pub fn text_len(&self) -> u64 {
        self.len
    }

    /// Size of the compressed bytes.
    pub fn compressed_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text back (for clients that do not accept gzip, and for tests).
    pub fn text(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        let mut decoder = flate2::write::DeflateDecoder::new(&mut out);
        decoder.write_all(&self.bytes)?;
        decoder.flush()?;
        drop(decoder);
        if out.len() as u64 != self.len {
            return Err(std::io::Error::other(format!(
                "inflated {} bytes, expected {}",
                out.len(),
                self.len
            )));
        }
        Ok(out)
    }

    fn hasher(&self) -> crc32fast::Hasher {
        crc32fast::Hasher::new_with_initial_len(self.crc, self.len)
    }
}

/// Builds a [`Piece`] from text that arrives in parts, compressing as it goes, so the whole text
/// never has to be in memory at once.
pub struct PieceWriter {
    encoder: flate2::write::DeflateEncoder<Vec<u8>>,
    crc: crc32fast::Hasher,
    pending: Vec<u8>,
}

/// Text buffered by [`PieceWriter::pending`] before it is compressed.
const DRAIN_AT: usize = 32 * 1024;

impl Default for PieceWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PieceWriter {
    /// An empty piece, at the fast level.
    pub fn new() -> Self {
        PieceWriter {
            encoder: flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast()),
            crc: crc32fast::Hasher::new(),
            pending: Vec::new(),
        }
    }

    /// Appends `text` (after the text in [`pending`](Self::pending)).
    pub fn write(&mut self, text: &[u8]) {
        self.drain();
        self.compress(text);
    }

    fn compress(&mut self, text: &[u8]) {
        self.crc.update(text);
        // Writing into a Vec cannot fail.
        let _ = self.encoder.write_all(text);
    }

    /// A buffer for text to append; call [`drain_if_full`](Self::drain_if_full) now and then.
    pub fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Compresses the buffered text once there is enough of it (a few tens of KB).
    pub fn drain_if_full(&mut self) {
        if self.pending.len() >= DRAIN_AT {
            self.drain();
        }
    }

    fn drain(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.compress(&pending);
        self.pending = pending;
        self.pending.clear();
    }

    /// The piece: everything written, ending in a sync flush.
    pub fn finish(mut self) -> Piece {
        self.drain();
        let len = self.crc.total_len();
        if len == 0 {
            return Piece::default();
        }
        // `flush` is the sync flush; flushing into a Vec cannot fail.
        let _ = self.encoder.flush();
        // Take the bytes before the encoder finishes the stream with a final block on drop.
        let bytes = std::mem::take(self.encoder.get_mut());
        Piece {
            bytes: Bytes::from(bytes),
            crc: self.crc.finalize(),
            len,
        }
    }
}

/// The chunks of one gzip stream holding `pieces` in order: the header, each piece's shared
/// bytes, then the final block and trailer. Nothing is copied but the 10-byte trailer.
pub fn gzip_chunks(pieces: &[&Piece]) -> Vec<Bytes> {
    let mut crc = crc32fast::Hasher::new();
    let mut chunks = Vec::with_capacity(pieces.len() + 2);
    chunks.push(Bytes::from_static(&GZIP_HEADER));
    for piece in pieces {
        if !piece.is_empty() {
            chunks.push(piece.bytes.clone());
            crc.combine(&piece.hasher());
        }
    }
    // ISIZE is the length modulo 2^32 (RFC 1952).
    let len = crc.total_len() as u32;
    let mut trailer = Vec::with_capacity(FINAL_BLOCK.len() + 8);
    trailer.extend_from_slice(&FINAL_BLOCK);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    trailer.extend_from_slice(&len.to_le_bytes());
    chunks.push(Bytes::from(trailer));
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(chunks: &[Bytes]) -> Vec<u8> {
        let stream: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut out = Vec::new();
        // A single-member decoder: the joined pieces must form one member, not several.
        flate2::read::GzDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn joined_pieces_are_one_valid_gzip_member_of_the_whole_text() {
        let texts: Vec<Vec<u8>> = vec![
            b"# HELP a x\n# TYPE a gauge\n".to_vec(),
            Vec::new(),
            (0..5000)
                .flat_map(|i| format!("a{{user=\"u{i}\"}} {i}\n").into_bytes())
                .collect(),
            b"b 1\n".to_vec(),
        ];
        let pieces: Vec<Piece> = texts.iter().map(|t| Piece::compress(t)).collect();
        let whole: Vec<u8> = texts.concat();
        let refs: Vec<&Piece> = pieces.iter().collect();
        assert_eq!(gunzip(&gzip_chunks(&refs)), whole);

        let joined = Piece::join(pieces.iter());
        assert_eq!(joined.text_len(), whole.len() as u64);
        assert_eq!(joined.text().unwrap(), whole);
        assert_eq!(gunzip(&gzip_chunks(&[&joined])), whole);
        assert!(joined.compressed_len() < whole.len() / 4, "it compresses");
    }

    #[test]
    fn text_written_in_parts_is_one_piece() {
        let mut writer = PieceWriter::new();
        let mut whole = String::new();
        for i in 0..20_000 {
            let line = format!("x{{i=\"{i}\"}} {i}\n");
            writer.pending().extend_from_slice(line.as_bytes());
            writer.drain_if_full();
            whole.push_str(&line);
        }
        writer.write(b"tail\n");
        whole.push_str("tail\n");
        let piece = writer.finish();
        let text = piece.text().unwrap();
        assert_eq!(text.len(), whole.len());
        assert!(text == whole.as_bytes(), "the text differs");
        assert_eq!(piece.text_len(), whole.len() as u64);
    }

    #[test]
    fn an_empty_stream_is_valid_gzip() {
        assert_eq!(gunzip(&gzip_chunks(&[])), b"");
        assert_eq!(gunzip(&gzip_chunks(&[&Piece::compress(b"")])), b"");
        assert_eq!(Piece::join(&[] as &[Piece]).text().unwrap(), b"");
    }

    #[test]
    fn a_corrupt_piece_is_an_error_not_wrong_text() {
        let mut piece = Piece::compress(b"hello hello hello\n");
        piece.len += 1;
        assert!(piece.text().is_err());
    }
}
