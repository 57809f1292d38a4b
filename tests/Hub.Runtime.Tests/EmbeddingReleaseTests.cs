using Hub.IR;
using Hub.Runtime.Execution;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>Tests that switch <see cref="EmbeddingExec.ReleaseTablePages"/> run alone.</summary>
[CollectionDefinition(nameof(EmbeddingReleaseCollection), DisableParallelization = true)]
public sealed class EmbeddingReleaseCollection;

/// <summary>
/// An embedding lookup unmaps the table's pages again (MADV_DONTNEED on the IR's read-only file mapping) so a table
/// read a few rows per token does not stay resident (issue #8's peak-RSS target), unless another node reads the table.
/// </summary>
[Collection(nameof(EmbeddingReleaseCollection))]
public class EmbeddingReleaseTests
{
    private const int V = 2048, D = 512; // 4 MiB of f32 rows, 2 KiB each

    private static (GraphBuilder Builder, string Rows) Graph(bool tiedHead)
    {
        var rng = new Random(7);
        var b = new GraphBuilder("emb-release");
        var ids = b.Input("ids", DType.I32, "batch", "seq");
        var table = b.Weight("emb", LazyTensor.FromArray(Enumerable.Range(0, V * D).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), new Shape(V, D), "emb"), WeightKind.Embedding);
        if (tiedHead)
        {
            // The head reads the table before the lookup does: a release by the lookup would leave it unmapped.
            var x = b.Input("x", DType.F32, "batch", "seq", D);
            var logits = b.Op(Ops.Linear, "head", new[] { x, table });
            b.Output(logits, DType.F32);
        }
        var h = b.Op(Ops.Embedding, "e", new[] { ids, table });
        b.Output(h, DType.F32);
        return (b, h);
    }

    private static int[] Ids(int n) => Enumerable.Range(0, n).Select(i => i * 31 % V).ToArray();

    private static (float[] Rows, long Rss, long TableBytes) Run(bool release, bool tiedHead, int[] ids)
    {
        bool before = EmbeddingExec.ReleaseTablePages;
        EmbeddingExec.ReleaseTablePages = release;
        var dir = Path.Combine(Path.GetTempPath(), "hub-emb-release-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (builder, output) = Graph(tiedHead);
            IrFormat.Write(dir, builder.Build());
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 256, MaxBatch = 1 });
            using var req = cm.CreateInferRequest();
            req.SetInput("ids", ids, 1, ids.Length);
            if (tiedHead) req.SetInput("x", new float[ids.Length * D], 1, ids.Length, D);
            req.Infer();
            var rows = req.GetOutput(output).ToArray();
            return (rows, OperatingSystem.IsLinux() ? Hub.Tests.Smaps.Rss(p => p.StartsWith(dir, StringComparison.Ordinal)) : 0, ir.GetWeight("emb").ByteLength);
        }
        finally
        {
            EmbeddingExec.ReleaseTablePages = before;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    [Fact]
    public void Released_lookup_returns_the_same_rows_as_a_kept_one_on_every_call()
    {
        foreach (int n in new[] { 1, 3, 64, 200 })
        {
            var ids = Ids(n);
            var kept = Run(release: false, tiedHead: false, ids).Rows;
            var released = Run(release: true, tiedHead: false, ids).Rows;
            Assert.Equal(n * D, kept.Length);
            Assert.Equal(kept, released);
        }
    }

    [SkippableFact]
    public void Lookup_leaves_the_table_unmapped_unless_another_node_reads_it()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "MADV_DONTNEED release is Linux only");
        var ids = Ids(64); // 64 rows on 64 different pages
        long kept = Run(release: false, tiedHead: false, ids).Rss;
        long released = Run(release: true, tiedHead: false, ids).Rss;
        var (_, tied, tableBytes) = Run(release: true, tiedHead: true, ids);
        Assert.True(kept >= 64 * 4096, $"kept table: {kept} bytes resident after 64 lookups");
        Assert.True(released <= 4 * 4096, $"released table: {released} bytes still resident");
        Assert.True(tied >= tableBytes * 9 / 10, $"tied head: {tied} bytes resident of the {tableBytes}-byte table it streams");
    }

    [SkippableFact]
    public unsafe void A_table_only_a_lookup_reads_is_kept_off_2_MiB_mappings()
    {
        // The bin's mapping asks for 2 MiB pages; a lookup's table is advised back to 4 KiB entries (MADV_NOHUGEPAGE),
        // so a cold lookup reads a small folio around its row rather than 2 MiB (a page cache that already holds 2 MiB
        // folios still maps a whole one: the kernel maps every page of a large folio it faults in).
        Skip.IfNot(OperatingSystem.IsLinux(), "MADV_NOHUGEPAGE and smaps are Linux only");
        Skip.IfNot(Hub.Tests.Smaps.TransparentHugePages, "this kernel has no transparent huge pages (/sys/kernel/mm/transparent_hugepage)");
        var dir = Path.Combine(Path.GetTempPath(), "hub-emb-nh-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (builder, _) = Graph(tiedHead: false);
            IrFormat.Write(dir, builder.Build());
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, MaxContext = 256, MaxBatch = 1 });
            using var req = cm.CreateInferRequest();
            var table = ir.GetWeight("emb");
            // the table's whole 2 MiB pages: 4 MiB of rows hold at least one
            long inner = (table.Pointer + (2 << 20) - 1) & ~((2L << 20) - 1);
            Assert.True(inner + (2 << 20) <= table.Pointer + table.ByteLength);
            Assert.Contains("nh", Hub.Tests.Smaps.VmFlags(inner));
        }
        finally { try { Directory.Delete(dir, true); } catch (IOException) { } }
    }

    [SkippableFact]
    public void A_kept_table_maps_only_the_pages_around_its_rows_not_whole_2_MiB_folios()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "posix_fadvise, MADV_NOHUGEPAGE and smaps are Linux only");
        // 8 rows 62 KiB apart in a 4 MiB table: the IR writer drops a lookup-only table from the page cache after
        // writing it (its chunked writes leave 2 MiB folios, and touching one maps all of it), and the runtime advises
        // the table MADV_NOHUGEPAGE, so each lookup faults a small folio around its row
        var (_, kept, tableBytes) = Run(release: false, tiedHead: false, Ids(8));
        Assert.True(kept >= 8 * 4096, $"kept table: {kept} bytes resident after 8 lookups (is smaps read?)");
        Assert.True(kept <= tableBytes / 4, $"kept table: {kept} bytes resident of {tableBytes} after 8 lookups");
    }
}
