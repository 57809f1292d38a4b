using System.IO.MemoryMappedFiles;

namespace Hub;

/// <summary>A read-only memory-mapped file exposing a raw pointer, so tensors are zero-copy views.</summary>
/// <remarks>The pointer stays valid until <see cref="Dispose"/>; views must not outlive the owner.</remarks>
public sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile? _mmf;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _ptr;

    /// <summary>The mapped path.</summary>
    public string Path { get; }
    /// <summary>The file length in bytes.</summary>
    public long Length { get; }

    /// <summary>Maps <paramref name="path"/> read-only.</summary>
    public MappedFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "the file does not exist");
        Length = LengthOf(path);
        if (Length == 0) return; // empty files cannot be mapped; Pointer stays null
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        _mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _ptr = p + _view.PointerOffset;
        if (OperatingSystem.IsLinux()) AdviseHugePages(p, Length + _view.PointerOffset);
    }

    private static readonly long PageSize = Environment.SystemPageSize;

    // MADV_HUGEPAGE on the file mapping: a fault on a page the page cache does not hold then reads a whole 2 MiB folio
    // (where the filesystem has large folios, e.g. ext4 from Linux 6.16, xfs), and the kernel maps 2 MiB folios with
    // one PMD entry, so the decode GEMV's weight streams walk 512 times fewer TLB entries, zero-copy. Without it, the
    // scattered first faults of parallel GEMV threads read the file back in 4 KiB folios. HUB_HUGEPAGES=0 turns it off.
    private static void AdviseHugePages(byte* view, long bytes)
    {
        const int MadvHugePage = 14;
        if (HugePageMemory.Advise && bytes >= 2L << 20) _ = HugePageMemory.Madvise(view, (nuint)bytes, MadvHugePage);
    }

    /// <summary>
    /// Keeps the whole 2 MiB pages inside [<paramref name="p"/>, <paramref name="p"/> + <paramref name="bytes"/>) of a
    /// file mapping on 4 KiB page-table entries (Linux MADV_NOHUGEPAGE; no-op elsewhere), for a tensor read a few rows
    /// at a time: an embedding lookup would otherwise map (and count in the resident set) the whole 2 MiB folio around
    /// each row, so 160 random ids would make most of a 32k-row table resident. Stays valid for later faults. With
    /// <paramref name="edges"/> the 2 MiB pages the range only partly covers are included too: for a tensor never read
    /// at all (a weight the runtime replaced by a copy), so that a small tensor beside it, such as a norm's gains read
    /// every step, maps its own 4 KiB pages rather than 2 MiB of the unread neighbour; <paramref name="limit"/> (the end
    /// of the mapping) keeps the widened range from reaching the mapping after it.
    /// </summary>
    public static void AdviseSmallPages(byte* p, long bytes, bool edges = false, byte* limit = null)
    {
        const long Huge = 2L << 20;
        const int MadvNoHugePage = 15;
        long start = edges ? (long)p & ~(Huge - 1) : ((long)p + Huge - 1) & ~(Huge - 1);
        long end = edges ? ((long)p + bytes + Huge - 1) & ~(Huge - 1) : ((long)p + bytes) & ~(Huge - 1);
        if (limit != null) end = Math.Min(end, (long)limit);
        if (end > start && OperatingSystem.IsLinux()) _ = HugePageMemory.Madvise((byte*)start, (nuint)(end - start), MadvNoHugePage);
    }

    /// <summary>
    /// The whole pages inside [<paramref name="p"/>, <paramref name="p"/> + <paramref name="bytes"/>) (empty when there
    /// is none): a page that also holds bytes outside the range, e.g. of a neighbouring tensor, is left out.
    /// </summary>
    public static (nint Start, nuint Length) WholePages(byte* p, long bytes)
    {
        long start = ((long)p + PageSize - 1) & ~(PageSize - 1), end = ((long)p + bytes) & ~(PageSize - 1);
        return end > start ? ((nint)start, (nuint)(end - start)) : default;
    }

    /// <summary>
    /// Unmaps <paramref name="pages"/> (from <see cref="WholePages"/>) of a read-only file mapping on Linux
    /// (MADV_DONTNEED: the page cache keeps the bytes and the next read maps them again, so resident memory drops
    /// without changing a value); no-op elsewhere. Only for file mappings: on anonymous memory it would zero the bytes.
    /// </summary>
    public static void DropPages((nint Start, nuint Length) pages)
    {
        if (pages.Length != 0 && OperatingSystem.IsLinux()) _ = HugePageMemory.Madvise((byte*)pages.Start, pages.Length, MadvDontNeed);
    }

    private const int MadvDontNeed = 4; // Linux MADV_DONTNEED

    /// <summary>
    /// The length of the file's content, following symbolic links (hub cache snapshots are links to blobs, and
    /// <c>FileInfo.Length</c> of a link is the length of the link itself).
    /// </summary>
    public static long LengthOf(string path)
    {
        var fi = new FileInfo(path);
        if (fi.LinkTarget is not null && fi.ResolveLinkTarget(returnFinalTarget: true) is FileInfo target) fi = target;
        return fi.Length;
    }

    /// <summary>Base address of the mapping (null for an empty file).</summary>
    public byte* Pointer => _ptr;

    /// <summary>A span over [offset, offset+length); throws when out of range.</summary>
    public ReadOnlySpan<byte> Span(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"range [{offset}, {offset + length}) outside {Path} ({Length} bytes)");
        if (length > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(length), "span longer than 2 GiB; use Pointer");
        return new ReadOnlySpan<byte>(_ptr + offset, (int)length);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_view != null && _ptr != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _ptr = null;
        }
        _view?.Dispose();
        _mmf?.Dispose();
    }
}
