namespace Hub.Core.Tests;

public unsafe class MappedFileTests : IDisposable
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("mapped");

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Huge_page_copy_holds_the_same_bytes_as_the_mapping()
    {
        // 3 MiB + 5 bytes: more than one 2 MiB page and a length that is not a multiple of one
        var bytes = new byte[(3 << 20) + 5];
        new Random(7).NextBytes(bytes);
        var path = Path.Combine(_dir, "w.bin");
        File.WriteAllBytes(path, bytes);
        using var mapped = new MappedFile(path);
        Environment.SetEnvironmentVariable("HUB_WEIGHTS_HUGEPAGES", "1");
        MappedFile copy;
        try { copy = new MappedFile(path); }
        finally { Environment.SetEnvironmentVariable("HUB_WEIGHTS_HUGEPAGES", null); }
        using (copy)
        {
            Assert.False(mapped.HugePages);
            Assert.Equal(OperatingSystem.IsLinux(), copy.HugePages);
            Assert.Equal(bytes.Length, copy.Length);
            Assert.True(copy.Span(0, bytes.Length).SequenceEqual(bytes));
            Assert.True(mapped.Span(0, bytes.Length).SequenceEqual(bytes));
            if (copy.HugePages) Assert.Equal(0, (long)copy.Pointer % (2 << 20));
        }
        Assert.True(copy.Pointer == null);
    }
}
