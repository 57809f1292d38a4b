namespace Hub.Core.Tests;

public unsafe class MappedFileTests : IDisposable
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("mapped");

    public void Dispose() => Directory.Delete(_dir, true);

    [SkippableFact]
    public void A_file_mapping_of_2_MiB_or_more_asks_for_huge_pages()
    {
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists("/proc/self/smaps"), "MADV_HUGEPAGE and /proc/self/smaps are Linux only");
        Skip.If(Environment.GetEnvironmentVariable("HUB_HUGEPAGES") == "0", "HUB_HUGEPAGES=0 turns the advice off");
        Skip.IfNot(Hub.Tests.Smaps.TransparentHugePages, "this kernel has no transparent huge pages (/sys/kernel/mm/transparent_hugepage)");
        var big = Path.Combine(_dir, "big.bin");
        var small = Path.Combine(_dir, "small.bin");
        File.WriteAllBytes(big, new byte[(2 << 20) + 4096]);
        File.WriteAllBytes(small, new byte[(1 << 20)]);
        using var b = new MappedFile(big);
        using var s = new MappedFile(small);
        // the kernel marks a MADV_HUGEPAGE range with "hg" in its VmFlags
        Assert.Contains("hg", Hub.Tests.Smaps.VmFlags((long)b.Pointer));
        Assert.DoesNotContain("hg", Hub.Tests.Smaps.VmFlags((long)s.Pointer));
    }

    [Fact]
    public void Whole_pages_leave_out_pages_shared_with_bytes_outside_the_range()
    {
        long page = Environment.SystemPageSize;
        byte* a = (byte*)(16 * page);   // addresses only: nothing is touched
        Assert.Equal(((nint)(16 * page), (nuint)(2 * page)), MappedFile.WholePages(a, 2 * page));
        Assert.Equal(((nint)(17 * page), (nuint)page), MappedFile.WholePages(a + 1, 2 * page));   // first and last page partial
        Assert.Equal(((nint)(16 * page), (nuint)page), MappedFile.WholePages(a, 2 * page - 1));
        Assert.Equal(default, MappedFile.WholePages(a + 1, page));   // inside two pages, owns neither
        Assert.Equal(default, MappedFile.WholePages(a, 0));
        MappedFile.DropPages(default);   // an empty range is a no-op
    }

    [Fact]
    public void Dropped_pages_of_a_file_mapping_read_back_the_same_bytes()
    {
        long page = Environment.SystemPageSize;
        var path = Path.Combine(Path.GetTempPath(), $"hub-drop-{Guid.NewGuid():N}.bin");
        var bytes = new byte[4 * page + 123];
        new Random(5).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        try
        {
            using (var f = new MappedFile(path))
            {
                long sum = 0;
                for (long i = 0; i < f.Length; i++) sum += f.Pointer[i];   // fault everything in
                MappedFile.DropPages(MappedFile.WholePages(f.Pointer + 7, f.Length - 7));
                Assert.Equal(bytes, f.Span(0, f.Length).ToArray());
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Huge_page_memory_is_aligned_whole_and_writable_and_frees_once()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => HugePageMemory.Allocate(0));
        long bytes = (5L << 20) + 3;   // not a whole number of 2 MiB pages
        var mem = HugePageMemory.Allocate(bytes);
        try
        {
            Assert.Equal(OperatingSystem.IsLinux(), mem.Mapped);
            Assert.True(mem.Length >= (nuint)bytes);
            if (mem.Mapped)
            {
                Assert.Equal(0, (long)mem.Pointer % (2 << 20));
                Assert.Equal(0u, mem.Length % (2u << 20));
            }
            else Assert.Equal(0, (long)mem.Pointer % 4096);
            var span = new Span<byte>(mem.Pointer, (int)bytes);
            if (mem.Mapped) Assert.Equal(-1, span.IndexOfAnyExcept((byte)0));   // a fresh mapping reads zero
            for (int i = 0; i < span.Length; i++) span[i] = (byte)(i * 31 + 7);
            for (int i = 0; i < span.Length; i += 4093) Assert.Equal((byte)(i * 31 + 7), span[i]);
            Assert.Equal((byte)((bytes - 1) * 31 + 7), span[^1]);
        }
        finally { mem.Free(); }
        Assert.True(mem.Pointer == null);
        Assert.Equal(0u, mem.Length);
        mem.Free();   // idempotent
    }
}
