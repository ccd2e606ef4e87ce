/// A file's media type from its first bytes (signatures as in libmagic and the WHATWG MIME sniffing
/// standard), for `file.mime_type`. Only unambiguous signatures; anything else has no type.
public enum FileMagic {
    struct Signature {
        var offset: Int
        var bytes: [UInt8]
        var mime: StaticString
    }

    static let signatures: [Signature] = [
        Signature(offset: 0, bytes: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], mime: "image/png"),
        Signature(offset: 0, bytes: Array("GIF87a".utf8), mime: "image/gif"),
        Signature(offset: 0, bytes: Array("GIF89a".utf8), mime: "image/gif"),
        Signature(offset: 0, bytes: [0xFF, 0xD8, 0xFF], mime: "image/jpeg"),
        Signature(offset: 0, bytes: [0x00, 0x00, 0x01, 0x00], mime: "image/x-icon"),
        Signature(offset: 0, bytes: Array("BM".utf8), mime: "image/bmp"),
        Signature(offset: 0, bytes: Array("%PDF-".utf8), mime: "application/pdf"),
        Signature(offset: 0, bytes: [0x50, 0x4B, 0x03, 0x04], mime: "application/zip"),
        Signature(offset: 0, bytes: [0x1F, 0x8B], mime: "application/gzip"),
        Signature(offset: 0, bytes: Array("BZh".utf8), mime: "application/x-bzip2"),
        Signature(offset: 0, bytes: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00], mime: "application/x-xz"),
        Signature(offset: 0, bytes: [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C], mime: "application/x-7z-compressed"),
        Signature(offset: 0, bytes: Array("Rar!".utf8), mime: "application/vnd.rar"),
        Signature(offset: 0, bytes: [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1], mime: "application/x-ole-storage"),
        Signature(offset: 0, bytes: Array("MZ".utf8), mime: "application/x-dosexec"),
        Signature(offset: 0, bytes: [0x7F, 0x45, 0x4C, 0x46], mime: "application/x-executable"),
        Signature(offset: 0, bytes: [0xCA, 0xFE, 0xBA, 0xBE], mime: "application/java-vm"),
        Signature(offset: 0, bytes: Array("wOFF".utf8), mime: "font/woff"),
        Signature(offset: 0, bytes: Array("wOF2".utf8), mime: "font/woff2"),
        Signature(offset: 0, bytes: Array("OggS".utf8), mime: "application/ogg"),
        Signature(offset: 0, bytes: Array("ID3".utf8), mime: "audio/mpeg"),
        Signature(offset: 4, bytes: Array("ftyp".utf8), mime: "video/mp4"),
        Signature(offset: 0, bytes: Array("-----BEGIN PGP SIGNATURE".utf8), mime: "application/pgp-signature"),
        Signature(offset: 0, bytes: Array("<?xml".utf8), mime: "text/xml"),
    ]

    /// Text prefixes compared case-insensitively after leading whitespace (WHATWG "HTML" patterns).
    static let htmlPrefixes: [[UInt8]] = ["<!doctype html", "<html", "<head", "<script", "<iframe", "<body", "<title", "<!--"].map { Array($0.utf8) }

    public static func mimeType(_ b: UnsafeRawBufferPointer) -> StaticString? {
        for s in signatures where b.count >= s.offset + s.bytes.count {
            var ok = true
            for i in 0..<s.bytes.count where b[s.offset + i] != s.bytes[i] { ok = false; break }
            if ok { return s.mime }
        }
        var start = 0
        while start < b.count, b[start] == 0x20 || b[start] == 0x09 || b[start] == 0x0A || b[start] == 0x0D { start += 1 }
        for p in htmlPrefixes where b.count - start >= p.count {
            var ok = true
            for i in 0..<p.count {
                var c = b[start + i]
                if c >= 0x41 && c <= 0x5A { c |= 0x20 }
                if c != p[i] { ok = false; break }
            }
            if ok { return "text/html" }
        }
        return nil
    }
}
