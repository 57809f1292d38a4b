// The compiled-weights cache: the region of interleaved Q8_0/Q4_0 copies that CompiledModel.InterleaveWeights makes,
// saved beside the IR (<IR>/model_cache/x4-<key>.bin) after a successful repack and memory-mapped by later compiles
// instead of repacking (llama.cpp maps a GGUF already in its runtime layout; OpenVINO's CACHE_DIR maps its compiled
// blob). A cold repack reads the whole IR from disk (1b Q8_0: 1.1 GB); a mapped cache file reads nothing at load and
// faults its pages in as decode first reads them.
//
// File: a header of whole 4 KiB pages (usually one), then the region byte for byte, so every copy keeps the 64-byte
// alignment of its region offset. Header, little-endian: magic "HUBX4WC\0", format version (int32), header bytes
// (int32), key (32 bytes), region bytes (int64), entry count (int32), 4 reserved bytes, then per entry the first 8
// bytes of SHA-256(name), region offset (int64) and bytes (int64). A file is used only when its header matches the
// plan and its length is header + region: the data itself is never read to validate it (that is the read this cache
// saves). Nothing half-written is read: a writer writes a temporary name in the folder, flushes it to disk (so a crash
// after the rename cannot leave a file of the right length over blocks never written) and renames it into place.
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Hub.IR;

namespace Hub.Runtime;

/// <summary>Reads and writes the compiled-weights cache file of one repack plan (see the file comment).</summary>
internal static unsafe class WeightCacheFile
{
    /// <summary>
    /// Version of the interleaved layouts (QuantKernels.InterleaveX4, QuantGemvInt4.InterleaveX4), part of the key:
    /// bump it whenever either layout changes, so that files written by an older runtime are ignored and replaced.
    /// </summary>
    internal const int LayoutVersion = 1;

    /// <summary>Version of the file format (header) itself.</summary>
    internal const int FormatVersion = 1;

    private const int Page = 4096;
    private const int FixedHeaderBytes = 64;
    private const int EntryBytes = 24;
    private static ReadOnlySpan<byte> Magic => "HUBX4WC\0"u8;

    /// <summary>One planned copy: the weight, its format and where its copy sits in the region.</summary>
    internal readonly record struct Entry(string Name, bool Int4, int N, int K, DType ScalesDType, long WeightOffset, long ScalesOffset, long Offset, long Bytes);

    /// <summary>
    /// The key of a plan: SHA-256 over the IR's weights checksum, <see cref="LayoutVersion"/> and every entry in order,
    /// so a re-exported IR, another instruction-set outcome (no AVX-VNNI: no int8 entries) or a layout change is
    /// another key.
    /// </summary>
    internal static byte[] Key(string irSha256, IReadOnlyList<Entry> plan, long total)
    {
        var sb = new StringBuilder();
        sb.Append("hub-x4-cache|layout=").Append(LayoutVersion).Append("|ir=").Append(irSha256).Append("|total=").Append(total).Append('\n');
        foreach (var e in plan)
            sb.Append(e.Name).Append('\0').Append(e.Int4 ? "int4" : "int8").Append('\0').Append(e.N).Append('\0').Append(e.K).Append('\0')
              .Append(e.ScalesDType).Append('\0').Append(e.WeightOffset).Append('\0').Append(e.ScalesOffset).Append('\0')
              .Append(e.Offset).Append('\0').Append(e.Bytes).Append('\n');
        return SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()));
    }

    /// <summary>The cache file name of <paramref name="key"/>: <c>x4-</c> and its first 24 hex digits.</summary>
    internal static string FileName(byte[] key) => $"x4-{Convert.ToHexStringLower(key)[..24]}.bin";

    /// <summary>Bytes of the header of a plan with <paramref name="entries"/> entries (whole 4 KiB pages).</summary>
    internal static int HeaderBytes(int entries) => (FixedHeaderBytes + entries * EntryBytes + Page - 1) / Page * Page;

    /// <summary>
    /// Maps the cache file of <paramref name="key"/> in <paramref name="folder"/> when its header matches the plan
    /// and its length is header + <paramref name="total"/>; null when there is none or it does not match (never
    /// throws: a bad file only costs the repack, which then replaces it). The region starts at
    /// <see cref="HeaderBytes"/> into the mapping.
    /// </summary>
    internal static MappedFile? TryMap(string folder, byte[] key, IReadOnlyList<Entry> plan, long total)
    {
        MappedFile? file = null;
        try
        {
            var path = Path.Combine(folder, FileName(key));
            if (!File.Exists(path)) return null;
            int header = HeaderBytes(plan.Count);
            // the length first, from the directory entry: a short file must never be touched past its end
            if (MappedFile.LengthOf(path) != header + total) return null;
            file = new MappedFile(path);
            if (file.Length != header + total || !HeaderMatches(new ReadOnlySpan<byte>(file.Pointer, header), key, plan, total))
            {
                file.Dispose();
                return null;
            }
            DeleteAbandoned(folder);
            return file;
        }
        catch (Exception)
        {
            // whatever went wrong (unreadable, replaced, unmappable), the repack still works
            file?.Dispose();
            return null;
        }
    }

    private static bool HeaderMatches(ReadOnlySpan<byte> h, byte[] key, IReadOnlyList<Entry> plan, long total)
    {
        Span<byte> expected = new byte[h.Length];
        WriteHeader(expected, key, plan, total);
        return h.SequenceEqual(expected);
    }

    private static void WriteHeader(Span<byte> h, byte[] key, IReadOnlyList<Entry> plan, long total)
    {
        h.Clear();
        Magic.CopyTo(h);
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], FormatVersion);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], h.Length);
        key.CopyTo(h[16..48]);
        BinaryPrimitives.WriteInt64LittleEndian(h[48..], total);
        BinaryPrimitives.WriteInt32LittleEndian(h[56..], plan.Count);
        var at = h[FixedHeaderBytes..];
        Span<byte> nameHash = stackalloc byte[32];
        foreach (var e in plan)
        {
            SHA256.HashData(Encoding.UTF8.GetBytes(e.Name), nameHash);
            nameHash[..8].CopyTo(at);
            BinaryPrimitives.WriteInt64LittleEndian(at[8..], e.Offset);
            BinaryPrimitives.WriteInt64LittleEndian(at[16..], e.Bytes);
            at = at[EntryBytes..];
        }
    }

    /// <summary>
    /// Writes the <paramref name="total"/> bytes at <paramref name="region"/> as the cache file of <paramref name="key"/>
    /// in <paramref name="folder"/> (created when missing), then, when the folder is this IR's own
    /// (<paramref name="ownsFolder"/>: the default <c>&lt;IR&gt;/model_cache</c>), deletes its other <c>x4-*.bin</c> files
    /// (stale keys); a folder the options name may be shared by several models and keeps them. Best-effort: returns false, leaving no file behind, when the folder cannot be written, the disk would be
    /// left with less than <see cref="FreeSpaceReserve"/>, or the write fails.
    /// </summary>
    internal static bool TryWrite(string folder, byte[] key, IReadOnlyList<Entry> plan, byte* region, long total, bool ownsFolder = true)
    {
        string? tmp = null;
        try
        {
            int header = HeaderBytes(plan.Count);
            // asked of the IR folder when the cache folder does not exist yet, so a full disk does not even get an empty folder
            string probe = Directory.Exists(folder) ? folder : Path.GetDirectoryName(Path.GetFullPath(folder)) ?? folder;
            if (FreeBytes(probe) is long free && free < header + total + FreeSpaceReserve) return false;
            Directory.CreateDirectory(folder);
            var name = FileName(key);
            var path = Path.Combine(folder, name);
            tmp = Path.Combine(folder, $".{name}.{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
            using (var w = new ChunkedFileWriter(tmp))
            {
                var h = new byte[header];
                WriteHeader(h, key, plan, total);
                w.Write(h);
                for (long done = 0; done < total;)
                {
                    int n = (int)Math.Min(1 << 30, total - done);
                    w.Write(new ReadOnlySpan<byte>(region + done, n));
                    done += n;
                }
                w.Flush(flushToDisk: true);   // on disk before the rename: after a crash a file of the right length never holds unwritten (zero) blocks
            }
            File.Move(tmp, path, overwrite: true);
            tmp = null;
            // only in a folder of this IR's own: a folder the options name may hold other models' files
            if (ownsFolder) foreach (var f in Directory.EnumerateFiles(folder, "x4-*.bin"))
                if (!string.Equals(Path.GetFileName(f), name, StringComparison.Ordinal)) TryDelete(f);
            DeleteAbandoned(folder);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or System.Security.SecurityException or ArgumentException)
        {
            return false;
        }
        finally
        {
            if (tmp != null) TryDelete(tmp);
        }
    }

    /// <summary>
    /// Free disk space a cache write leaves at least (1 GiB: a cache is not worth filling a disk); settable per thread
    /// for tests (read by Compile on the calling thread).
    /// </summary>
    internal static long FreeSpaceReserve
    {
        get => _reserveOverride ?? (1L << 30);
        set => _reserveOverride = value;
    }

    [ThreadStatic] private static long? _reserveOverride;

    // Free bytes of the file system holding folder, or null when the OS does not say.
    internal static long? FreeBytes(string folder)
    {
        try { return new DriveInfo(Path.GetFullPath(folder)).AvailableFreeSpace; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    // Temporary files of writers that died mid-write (a live writer's is minutes old at most), on every use of the
    // folder: once a valid file exists nothing is written there again, so a write-time sweep alone could leave one forever.
    private static void DeleteAbandoned(string folder)
    {
        try
        {
            foreach (var f in Directory.EnumerateFiles(folder, ".x4-*.tmp"))
                if (File.GetLastWriteTimeUtc(f) < DateTime.UtcNow.AddHours(-1)) TryDelete(f);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
