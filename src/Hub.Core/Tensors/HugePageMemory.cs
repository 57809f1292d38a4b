using System.Runtime.InteropServices;

namespace Hub;

/// <summary>
/// Anonymous native memory backed by transparent huge pages where the OS offers them (Linux MADV_HUGEPAGE), for large
/// copies made at load: 2 MiB pages cost one fault (and one TLB entry) per 2 MiB instead of 512 of each, and the
/// faults are most of what a gigabyte-sized copy into fresh memory spends. Elsewhere, or when the mapping fails, an
/// ordinary 4 KiB-aligned native allocation. HUB_HUGEPAGES=0 keeps the mapping on 4 KiB pages (and drops the advice
/// from <see cref="MappedFile"/>'s file mappings, whose 2 MiB folios already in the page cache the kernel still maps
/// whole): with THP defrag set to
/// "madvise" a 2 MiB fault may compact memory first, which on a host whose page cache fills its memory can cost far
/// more than it saves (an escape hatch; the default measured 0.24 s for 1b's 1.1 GB with 7 GB free).
/// </summary>
internal unsafe struct HugePageMemory
{
    private const long Huge = 2L << 20;

    /// <summary>Start of the block, 4 KiB aligned at least (2 MiB when mapped); null once freed.</summary>
    public byte* Pointer { get; private set; }

    /// <summary>Bytes reserved: the request rounded up to whole 2 MiB pages when mapped.</summary>
    public nuint Length { get; private set; }

    /// <summary>Whether the block is an anonymous mapping (else a native allocation).</summary>
    public bool Mapped { get; private set; }

    internal static readonly bool Advise = Environment.GetEnvironmentVariable("HUB_HUGEPAGES") != "0";

    /// <summary>
    /// Allocates <paramref name="bytes"/>; the content is undefined until written (zero when mapped), and a native
    /// allocation stands in when the mapping fails.
    /// </summary>
    /// <exception cref="OutOfMemoryException">neither a mapping nor a native allocation of that size succeeded.</exception>
    public static HugePageMemory Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        if (OperatingSystem.IsLinux())
        {
            const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MadvHugePage = 14;
            nuint len = (nuint)((bytes + Huge - 1) & ~(Huge - 1));
            // over-allocate by one huge page so the start can be 2 MiB aligned (the fault path needs aligned ranges)
            byte* raw = Mmap(null, len + (nuint)Huge, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
            if (raw != (byte*)-1 && raw != null)
            {
                byte* start = (byte*)(((nint)raw + (nint)(Huge - 1)) & ~(nint)(Huge - 1));
                if (start > raw) Munmap(raw, (nuint)(start - raw));
                byte* end = start + len, rawEnd = raw + len + (nuint)Huge;
                if (rawEnd > end) Munmap(end, (nuint)(rawEnd - end));
                if (Advise) _ = Madvise(start, len, MadvHugePage);
                return new HugePageMemory { Pointer = start, Length = len, Mapped = true };
            }
        }
        return new HugePageMemory { Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096), Length = (nuint)bytes };
    }

    /// <summary>Releases the block (idempotent).</summary>
    public void Free()
    {
        if (Pointer == null) return;
        if (Mapped) Munmap(Pointer, Length);
        else NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        Length = 0;
    }

    [DllImport("libc", EntryPoint = "mmap")]
    private static extern byte* Mmap(byte* addr, nuint length, int prot, int flags, int fd, long offset);

    [DllImport("libc", EntryPoint = "munmap")]
    private static extern int Munmap(byte* addr, nuint length);

    [DllImport("libc", EntryPoint = "madvise")]
    internal static extern int Madvise(byte* addr, nuint length, int advice);
}
