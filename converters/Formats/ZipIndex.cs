using System.Buffers.Binary;
using System.IO.Compression;

namespace Hub.Converters;

/// <summary>One member of a zip archive, located so its bytes can be viewed in place.</summary>
/// <param name="Name">Member name as stored.</param>
/// <param name="Method">0 = stored, 8 = deflate.</param>
/// <param name="DataOffset">Absolute offset of the member's (compressed) bytes in the archive.</param>
/// <param name="CompressedSize">Bytes stored.</param>
/// <param name="UncompressedSize">Bytes after decompression.</param>
internal readonly record struct ZipEntry(string Name, int Method, long DataOffset, long CompressedSize, long UncompressedSize);

/// <summary>
/// Reads the central directory of a memory-mapped zip (with zip64) and locates each member's data through its local
/// header, because torch.save stores members uncompressed and 64-byte aligned so tensors can be mapped in place;
/// System.IO.Compression exposes streams only, not offsets.
/// </summary>
internal static class ZipIndex
{
    public static Dictionary<string, ZipEntry> Read(MappedFile f)
    {
        string path = f.Path;
        long len = f.Length;
        if (len < 22) throw new CheckpointFormatException(path, null, $"file is {len} bytes, too short for a zip archive; it is truncated or not a torch.save checkpoint");
        // End of central directory: search backwards over the maximum comment length.
        long eocd = -1;
        long stop = Math.Max(0, len - 22 - 65535);
        for (long p = len - 22; p >= stop; p--)
        {
            if (U32(f, p) == 0x06054b50) { eocd = p; break; }
        }
        if (eocd < 0) throw new CheckpointFormatException(path, null, "no zip end-of-central-directory record; the file is truncated or not a torch.save zip checkpoint");
        long entries = U16(f, eocd + 10);
        long cdSize = U32(f, eocd + 12);
        long cdOffset = U32(f, eocd + 16);
        if (entries == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF)
        {
            long loc = eocd - 20;
            if (loc < 0 || U32(f, loc) != 0x07064b50)
                throw new CheckpointFormatException(path, null, "zip64 end-of-central-directory locator missing; the archive is corrupt");
            long rec = checked((long)U64(f, loc + 8));
            if (rec < 0 || rec + 56 > len || U32(f, rec) != 0x06064b50)
                throw new CheckpointFormatException(path, null, "zip64 end-of-central-directory record missing; the archive is corrupt");
            entries = checked((long)U64(f, rec + 32));
            cdSize = checked((long)U64(f, rec + 40));
            cdOffset = checked((long)U64(f, rec + 48));
        }
        if (cdOffset < 0 || cdOffset + cdSize > len)
            throw new CheckpointFormatException(path, null, $"zip central directory [{cdOffset}, {cdOffset + cdSize}) lies outside the file ({len} bytes); it is truncated");

        var result = new Dictionary<string, ZipEntry>(StringComparer.Ordinal);
        long at = cdOffset;
        for (long i = 0; i < entries; i++)
        {
            if (at + 46 > len || U32(f, at) != 0x02014b50)
                throw new CheckpointFormatException(path, null, $"zip central directory entry {i} is corrupt");
            int flags = U16(f, at + 8);
            int method = U16(f, at + 10);
            long comp = U32(f, at + 20);
            long uncomp = U32(f, at + 24);
            int nameLen = U16(f, at + 28), extraLen = U16(f, at + 30), commentLen = U16(f, at + 32);
            long local = U32(f, at + 42);
            if (at + 46 + nameLen + extraLen + commentLen > len)
                throw new CheckpointFormatException(path, null, $"zip central directory entry {i} runs past the end of the file");
            string name = System.Text.Encoding.UTF8.GetString(f.Span(at + 46, nameLen));
            // zip64 extended information: only the fields saturated in the fixed part are present, in this order.
            long e = at + 46 + nameLen, eEnd = e + extraLen;
            while (e + 4 <= eEnd)
            {
                int id = U16(f, e), sz = U16(f, e + 2);
                if (id == 0x0001)
                {
                    long q = e + 4;
                    if (uncomp == 0xFFFFFFFF) { uncomp = checked((long)U64(f, q)); q += 8; }
                    if (comp == 0xFFFFFFFF) { comp = checked((long)U64(f, q)); q += 8; }
                    if (local == 0xFFFFFFFF) { local = checked((long)U64(f, q)); }
                }
                e += 4 + sz;
            }
            if ((flags & 1) != 0)
                throw new CheckpointFormatException(path, name, "zip member is encrypted; torch checkpoints never are");
            if (local + 30 > len || U32(f, local) != 0x04034b50)
                throw new CheckpointFormatException(path, name, "zip local header missing or corrupt");
            long data = local + 30 + U16(f, local + 26) + U16(f, local + 28);
            if (data + comp > len)
                throw new CheckpointFormatException(path, name, $"zip member data [{data}, {data + comp}) runs past the end of the file ({len} bytes); the file is truncated");
            result[name] = new ZipEntry(name, method, data, comp, uncomp);
            at += 46 + nameLen + extraLen + commentLen;
        }
        return result;
    }

    /// <summary>The decompressed bytes of a member (copy; for data.pkl and the rare compressed storage).</summary>
    public static byte[] ReadAll(MappedFile f, ZipEntry e)
    {
        if (e.UncompressedSize > int.MaxValue)
            throw new CheckpointFormatException(f.Path, e.Name, "compressed zip member larger than 2 GiB cannot be read; re-save the checkpoint uncompressed (torch.save does so by default)");
        if (e.Method == 0)
        {
            if (e.CompressedSize != e.UncompressedSize)
                throw new CheckpointFormatException(f.Path, e.Name, "stored zip member has different compressed and uncompressed sizes");
            return f.Span(e.DataOffset, e.CompressedSize).ToArray();
        }
        if (e.Method != 8)
            throw new CheckpointFormatException(f.Path, e.Name, $"zip compression method {e.Method} is not supported (only stored and deflate)");
        var dst = new byte[e.UncompressedSize];
        unsafe
        {
            using var src = new UnmanagedMemoryStream(f.Pointer + e.DataOffset, e.CompressedSize);
            using var inflate = new DeflateStream(src, CompressionMode.Decompress);
            int got = 0;
            try
            {
                while (got < dst.Length)
                {
                    int r = inflate.Read(dst, got, dst.Length - got);
                    if (r == 0) break;
                    got += r;
                }
            }
            catch (InvalidDataException x)
            {
                throw new CheckpointFormatException(f.Path, e.Name, $"deflated zip member is corrupt ({x.Message})", x);
            }
            if (got != dst.Length)
                throw new CheckpointFormatException(f.Path, e.Name, $"deflated zip member produced {got} of {dst.Length} bytes; the file is corrupt");
        }
        return dst;
    }

    private static uint U32(MappedFile f, long p) => BinaryPrimitives.ReadUInt32LittleEndian(f.Span(p, 4));
    private static ushort U16(MappedFile f, long p) => BinaryPrimitives.ReadUInt16LittleEndian(f.Span(p, 2));
    private static ulong U64(MappedFile f, long p) => BinaryPrimitives.ReadUInt64LittleEndian(f.Span(p, 8));
}
