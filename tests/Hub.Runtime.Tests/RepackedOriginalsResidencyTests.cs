using System.Runtime.Intrinsics.X86;
using Hub.IR;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// Once a Q8_0 weight is repacked (or its copy mapped from the weight cache), its original must not stay resident
/// through a small tensor stored beside it: the IR writer leaves the bin in 2 MiB page-cache folios, and touching any
/// byte of a large folio maps all of it, so a norm's gains read every step would otherwise keep ~2 MiB of each
/// neighbouring original mapped (CompiledModel.MapNeighboursOfOriginals).
/// </summary>
[Collection(nameof(EmbeddingReleaseCollection))]   // reads this process's smaps: alone, like the embedding tests
public class RepackedOriginalsResidencyTests
{
    private const int K = 2048, N = 1536;   // two 3 MiB Q8_0 originals with the gains between them

    private static string WriteModel()
    {
        var aq = QuantKernelTests.RandomQ(false, N, K, 32, true, 3);
        var bq = QuantKernelTests.RandomQ(false, K, N, 32, true, 4);
        var b = new GraphBuilder("originals");
        var x = b.Input("x", DType.F32, "batch", "seq", K);
        var a = b.Weight("a", LazyTensor.FromArray(new float[N * K], new Shape(N, K), "a"), WeightKind.Matrix);
        var g = b.Weight("g", LazyTensor.FromArray(QuantKernelTests.Rand(N, 5), new Shape(N), "g"), WeightKind.Vector);
        var w2 = b.Weight("b", LazyTensor.FromArray(new float[K * N], new Shape(K, N), "b"), WeightKind.Matrix);
        var h = b.Op(Ops.Linear, "la", new[] { x, a });
        var n = b.Op(Ops.RMSNorm, "norm", new[] { h, g }, new { eps = 1e-6 });
        b.Output(b.Op(Ops.Linear, "lb", new[] { n, w2 }), DType.F32);
        var dir = Path.Combine(Path.GetTempPath(), "hub-originals-" + Guid.NewGuid().ToString("N"));
        IrFormat.Write(dir, b.Build(), new IrWriteOptions
        {
            Encoder = (p, _) =>
            {
                var q = p.Name switch { "a" => aq, "b" => bq, _ => null };
                if (q is null) return null;
                var quant = new Quantization("int8", 32, true, p.Name + ".scales", null);
                var sb = new byte[q.Scales.Length * 2];
                Buffer.BlockCopy(QuantKernelTests.HalfBits(q.Scales), 0, sb, 0, sb.Length);
                return new List<EncodedWeight>
                {
                    new(p.Name, DType.I8, new Shape(q.N, q.K), q.Data, quant),
                    new(quant.Scales, DType.F16, new Shape(q.N, q.Groups), sb, null),
                };
            },
        });
        return dir;
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_step_leaves_only_the_small_tensors_pages_of_the_bin_resident(bool fromCache)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "smaps and madvise are Linux only");
        Skip.IfNot(AvxVnni.IsSupported, "Q8_0 is repacked on AVX-VNNI only");
        bool repack = CompiledModel.RepackInt8;
        CompiledModel.RepackInt8 = true;
        var dir = WriteModel();
        try
        {
            var options = new RuntimeOptions { Threads = 2, MaxContext = 8, MaxBatch = 1, WeightCache = fromCache };
            if (fromCache)
            {
                using var first = IrModel.Load(dir);
                using var writer = CompiledModel.Compile(first, options);
                Assert.True(writer.WroteWeightCache);
            }
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, options);
            Assert.Equal(fromCache, cm.InterleavedFromCache);
            Assert.True(cm.InterleavedBytes > 2L * N * K, $"interleaved {cm.InterleavedBytes} bytes");
            using var req = cm.CreateInferRequest();
            var x = QuantKernelTests.Rand(K, 9);
            for (int step = 0; step < 2; step++)
            {
                req.SetInput("x", x, 1, 1, K);
                req.Infer();
            }
            long rss = Hub.Tests.Smaps.Rss(p => p == Path.Combine(dir, IrFormat.BinFile));
            long originals = 2L * N * K;
            // the gains (6 KiB) and the pages they share: a few 4 KiB pages, not 2 MiB folios of the originals
            Assert.True(rss >= 4096, $"{rss} bytes of the bin resident: the gains read every step must be (is smaps read?)");
            Assert.True(rss <= 256 << 10, $"{rss} bytes of the bin resident after two steps ({originals} bytes of originals, all copied)");
        }
        finally
        {
            CompiledModel.RepackInt8 = repack;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
