namespace Hub.Core.Tests;

public class ChunkedFileWriterTests : IDisposable
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("chunked");

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Writes_of_any_size_reach_the_file_in_order_and_only_as_whole_aligned_chunks_until_the_end()
    {
        const int chunk = ChunkedFileWriter.ChunkBytes;
        var rng = new Random(11);
        // small, chunk-sized, larger than two chunks, and writes that straddle a boundary
        int[] sizes = [1, 7, chunk - 8, 3, chunk, 2 * chunk + 5, 0, 4096, chunk - 1, 1, 1, 3 * chunk, 17];
        var expected = new MemoryStream();
        var path = Path.Combine(_dir, "w.bin");
        using (var w = new ChunkedFileWriter(path))
        {
            foreach (var n in sizes)
            {
                var data = new byte[n];
                rng.NextBytes(data);
                w.Write(data, 0, n);
                expected.Write(data);
                w.Flush();   // what BinaryWriter does when disposed: must not write a partial chunk
                Assert.Equal(expected.Length, w.Position);
                long onDisk = new FileInfo(path).Length;
                Assert.Equal(0, onDisk % chunk);
                Assert.Equal(expected.Length / chunk * chunk, onDisk);
            }
            w.WriteByte(42);
            expected.WriteByte(42);
            w.Flush(flushToDisk: true);
            Assert.Equal(expected.Length, new FileInfo(path).Length);
        }
        Assert.Equal(expected.ToArray(), File.ReadAllBytes(path));
    }

    [Fact]
    public void Dispose_writes_the_tail_and_reading_or_seeking_is_refused()
    {
        var path = Path.Combine(_dir, "t.bin");
        using (var w = new ChunkedFileWriter(path))
        {
            w.Write([1, 2, 3]);
            Assert.False(w.CanRead || w.CanSeek);
            Assert.Throws<NotSupportedException>(() => w.Seek(0, SeekOrigin.Begin));
            Assert.Throws<NotSupportedException>(() => w.Read(new byte[1], 0, 1));
        }
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
    }

    [SkippableFact]
    public void After_a_failed_write_dispose_leaves_the_tail_so_the_first_error_is_the_one_reported()
    {
        // /dev/full fails every write with ENOSPC: the buffered chunk fails to flush while bytes are still buffered, and
        // Dispose must not throw a second error for them (it would replace the first one in a using block)
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists("/dev/full"), "needs Linux's /dev/full");
        var w = new ChunkedFileWriter("/dev/full");
        w.Write(new byte[10]);
        Assert.Throws<IOException>(() => w.Write(new byte[ChunkedFileWriter.ChunkBytes]));
        w.Dispose();
        // a writer that never failed still writes its tail at Dispose, and a failing tail write surfaces there
        var ok = new ChunkedFileWriter("/dev/full");
        ok.Write(new byte[10]);
        Assert.Throws<IOException>(() => ok.Dispose());
    }
}
