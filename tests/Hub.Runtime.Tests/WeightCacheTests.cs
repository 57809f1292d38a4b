using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using System.Text;
using Hub.IR;
using Hub.Runtime.Kernels;
using Hub.Weights;

namespace Hub.Runtime.Tests;

/// <summary>
/// The compiled-weights cache (session 13, <see cref="WeightCacheFile"/>): the first compile of a Q8_0 / Q4_0 model
/// writes its interleaved region to &lt;IR&gt;/model_cache, later compiles map it (same bytes, bit-identical outputs);
/// a truncated, garbled or stale file is ignored and replaced; an unwritable folder, a failed write, the option off and
/// HUB_WEIGHT_CACHE=0 leave no file and do not fail the compile.
/// </summary>
public unsafe class WeightCacheTests
{
    private const int N = 96, K = 256, Vocab = 24;

    private static bool Packs(bool int4) => int4 ? Avx2.IsSupported && Fma.IsSupported : AvxVnni.IsSupported;

    // Embedding "emb" → Linear "w" [N, K] (+ bias) → Linear "head" [Vocab, N] (int8: packed; int4: K = N is not whole
    // units) and Linear "odd" [20, K] on the embedding output (packed): two copies in the region either way.
    private static string WriteModel(bool int4, int seed = 42, string? dir = null)
    {
        var wq = QuantKernelTests.RandomQ(int4, N, K, 32, true, seed);
        var tq = QuantKernelTests.RandomQ(int4, Vocab, N, 32, true, seed + 1);
        var eq = QuantKernelTests.RandomQ(int4, Vocab, K, 32, true, seed + 2);
        var oq = QuantKernelTests.RandomQ(int4, 20, K, 32, true, seed + 3);
        var b = new GraphBuilder("wcache");
        var ids = b.Input("ids", DType.I32, "batch", "seq");
        var emb = b.Weight("emb", LazyTensor.FromArray(new float[Vocab * K], new Shape(Vocab, K), "emb"), WeightKind.Embedding);
        var w = b.Weight("w", LazyTensor.FromArray(new float[N * K], new Shape(N, K), "w"), WeightKind.Matrix);
        var head = b.Weight("head", LazyTensor.FromArray(new float[Vocab * N], new Shape(Vocab, N), "head"), WeightKind.Matrix);
        var odd = b.Weight("odd", LazyTensor.FromArray(new float[20 * K], new Shape(20, K), "odd"), WeightKind.Matrix);
        var bb = b.Weight("b", LazyTensor.FromArray(QuantKernelTests.Rand(N, seed + 4), new Shape(N), "b"), WeightKind.Vector);
        var h = b.Op(Ops.Embedding, "e", new[] { ids, emb });
        var y = b.Op(Ops.Linear, "lin", new[] { h, w, bb });
        b.Output(b.Op(Ops.Linear, "lm", new[] { y, head }), DType.F32);
        b.Output(b.Op(Ops.Linear, "oddlin", new[] { h, odd }), DType.F32);
        dir ??= Path.Combine(Path.GetTempPath(), "hub-wcache-" + Guid.NewGuid().ToString("N"));
        IrFormat.Write(dir, b.Build(), new IrWriteOptions
        {
            Encoder = (p, _) =>
            {
                var q = p.Name switch { "w" => wq, "head" => tq, "emb" => eq, "odd" => oq, _ => null };
                if (q is null) return null;
                var quant = new Quantization(int4 ? "int4" : "int8", 32, true, p.Name + ".scales", null);
                var sb = new byte[q.Scales.Length * 2];
                Buffer.BlockCopy(QuantKernelTests.HalfBits(q.Scales), 0, sb, 0, sb.Length);
                return new List<EncodedWeight>
                {
                    new(p.Name, int4 ? DType.U8 : DType.I8, new Shape(q.N, int4 ? q.K / 2 : q.K), q.Data, quant),
                    new(quant.Scales, DType.F16, new Shape(q.N, q.Groups), sb, null),
                };
            },
        });
        return dir;
    }

    private static string[] Outputs(IrModel ir) => ir.Graph.Outputs.Select(o => o.Name).ToArray();

    private static RuntimeOptions Options(bool cache = true, string? folder = null) =>
        new() { Threads = 2, MaxContext = 64, MaxBatch = 1, WeightCache = cache, WeightCacheDirectory = folder };

    private static string CacheFolder(string dir) => Path.Combine(dir, IrFormat.CacheFolder);

    private static string[] CacheFiles(string dir) =>
        Directory.Exists(CacheFolder(dir)) ? Directory.GetFiles(CacheFolder(dir)).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray() : [];

    // Runs the test body with both repacks on (per thread: HUB_INT8_REPACK=0 / HUB_INT4_REPACK=0 in the environment
    // would leave nothing to cache) and deletes the model folder after.
    private static void WithModel(bool int4, Action<string> body)
    {
        Skip.IfNot(Packs(int4), int4 ? "Q4_0 is repacked on AVX2+FMA only" : "Q8_0 is repacked on AVX-VNNI only");
        Skip.If(!CompiledModel.WeightCacheFromEnvironment, "HUB_WEIGHT_CACHE=0 is set");
        bool r8 = CompiledModel.RepackInt8, r4 = CompiledModel.RepackInt4;
        CompiledModel.RepackInt8 = true;
        CompiledModel.RepackInt4 = true;
        var dir = WriteModel(int4);
        try { body(dir); }
        finally
        {
            CompiledModel.RepackInt8 = r8;
            CompiledModel.RepackInt4 = r4;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static void AssertSameOutputs(CompiledModel a, CompiledModel b, string[] outputs)
    {
        using var ra = a.CreateInferRequest();
        using var rb = b.CreateInferRequest();
        foreach (int seq in new[] { 1, 3, 37 })
        {
            var tokens = Enumerable.Range(0, seq).Select(i => (i * 7 + seq) % Vocab).ToArray();
            foreach (var r in new[] { ra, rb }) { r.SetInput("ids", tokens, 1, seq); r.Infer(); }
            foreach (var o in outputs) Assert.Equal(ra.GetOutput(o).ToArray(), rb.GetOutput(o).ToArray());
        }
    }

    private static void AssertSameCopies(CompiledModel a, CompiledModel b, params string[] weights)
    {
        foreach (var name in weights)
        {
            var info = a.WeightInfoOf(a.ValueId(name));
            bool int4 = info.Quant!.Scheme == "int4";
            int n = (int)info.Shape[0], k = (int)info.Shape[1] * (int4 ? 2 : 1);
            long bytes = int4 ? QuantGemvInt4.X4Bytes(n, k) : QuantKernels.X4Bytes(n, k);
            byte* pa = a.InterleavedWeight(a.ValueId(name)), pb = b.InterleavedWeight(b.ValueId(name));
            Assert.True(pa != null && pb != null, name);
            Assert.True(new ReadOnlySpan<byte>(pa, (int)bytes).SequenceEqual(new ReadOnlySpan<byte>(pb, (int)bytes)), name);
        }
    }

    private static string[] Packed(bool int4) => int4 ? ["w", "odd"] : ["w", "head", "odd"];

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Second_compile_maps_the_cache_file_bit_identical_to_a_repack(bool int4)
    {
        WithModel(int4, dir =>
        {
            using var ir = IrModel.Load(dir);
            using var off = CompiledModel.Compile(ir, Options(cache: false));
            Assert.False(off.WroteWeightCache);
            Assert.Empty(CacheFiles(dir));
            using var first = CompiledModel.Compile(ir, Options());
            Assert.False(first.InterleavedFromCache);
            Assert.True(first.WroteWeightCache);
            var files = CacheFiles(dir);
            Assert.Single(files);
            Assert.Matches("^x4-[0-9a-f]{24}\\.bin$", files[0]);
            // a temporary file abandoned by a writer that died is swept when the file is mapped too (nothing is written again)
            var deadTmp = Path.Combine(CacheFolder(dir), $".{files[0]}.1-dead.tmp");
            File.WriteAllText(deadTmp, "x");
            File.SetLastWriteTimeUtc(deadTmp, DateTime.UtcNow.AddHours(-2));
            using var second = CompiledModel.Compile(ir, Options());
            Assert.True(second.InterleavedFromCache);
            Assert.False(second.WroteWeightCache);
            Assert.Equal(files, CacheFiles(dir));
            Assert.Equal(first.InterleavedBytes, second.InterleavedBytes);
            Assert.Equal(off.InterleavedBytes, second.InterleavedBytes);
            foreach (var w in Packed(int4))
                Assert.True(second.ScalesChecked(second.ValueId(w + ".scales")));   // checked when the file was written
            Assert.True(second.InterleavedWeight(second.ValueId("emb")) == null);
            AssertSameCopies(off, second, Packed(int4));
            AssertSameCopies(first, second, Packed(int4));
            AssertSameOutputs(off, second, Outputs(ir));
            AssertSameOutputs(first, second, Outputs(ir));
            // the mapping outlives nothing: after Dispose a compile maps the file again
            second.Dispose();
            using var third = CompiledModel.Compile(ir, Options());
            Assert.True(third.InterleavedFromCache);
            AssertSameOutputs(off, third, Outputs(ir));
        });
    }

    public enum Damage { Truncated, Longer, Magic, Key, Entry }

    [SkippableTheory]
    [InlineData(Damage.Truncated)]
    [InlineData(Damage.Longer)]
    [InlineData(Damage.Magic)]
    [InlineData(Damage.Key)]
    [InlineData(Damage.Entry)]
    public void A_damaged_cache_file_is_ignored_and_replaced(Damage damage)
    {
        WithModel(false, dir =>
        {
            using var ir = IrModel.Load(dir);
            using var off = CompiledModel.Compile(ir, Options(cache: false));
            using (var first = CompiledModel.Compile(ir, Options())) Assert.True(first.WroteWeightCache);
            var path = Path.Combine(CacheFolder(dir), CacheFiles(dir).Single());
            long length = new FileInfo(path).Length;
            using (var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                switch (damage)
                {
                    case Damage.Truncated: fs.SetLength(length - 64); break;
                    case Damage.Longer: fs.SetLength(length + 4096); break;
                    case Damage.Magic: fs.Write("GARBAGE!"u8); break;
                    case Damage.Key: fs.Position = 20; fs.WriteByte(0xA5); break;
                    case Damage.Entry: fs.Position = 64 + 8; fs.WriteByte(0x40); break;   // the first copy's offset
                }
            }
            using var second = CompiledModel.Compile(ir, Options());
            Assert.False(second.InterleavedFromCache);
            Assert.True(second.WroteWeightCache);
            Assert.Equal(length, new FileInfo(path).Length);
            AssertSameOutputs(off, second, Outputs(ir));
            using var third = CompiledModel.Compile(ir, Options());
            Assert.True(third.InterleavedFromCache);
            AssertSameOutputs(off, third, Outputs(ir));
        });
    }

    [SkippableFact]
    public void A_rewritten_ir_gets_a_new_key_and_the_stale_file_is_deleted()
    {
        WithModel(false, dir =>
        {
            string before;
            using (var ir = IrModel.Load(dir))
            using (var first = CompiledModel.Compile(ir, Options()))
            {
                Assert.True(first.WroteWeightCache);
                before = CacheFiles(dir).Single();
            }
            // a stale temporary file of a writer that died an hour ago goes too; a fresh one (a live writer's) stays
            var deadTmp = Path.Combine(CacheFolder(dir), ".x4-000000000000000000000000.bin.1-dead.tmp");
            var liveTmp = Path.Combine(CacheFolder(dir), ".x4-000000000000000000000000.bin.2-live.tmp");
            File.WriteAllText(deadTmp, "x");
            File.WriteAllText(liveTmp, "x");
            File.SetLastWriteTimeUtc(deadTmp, DateTime.UtcNow.AddHours(-2));
            WriteModel(false, seed: 7, dir: dir);   // same names and shapes, other weights: another checksum
            using var ir2 = IrModel.Load(dir);
            using var off = CompiledModel.Compile(ir2, Options(cache: false));
            using var second = CompiledModel.Compile(ir2, Options());
            Assert.False(second.InterleavedFromCache);
            Assert.True(second.WroteWeightCache);
            var after = CacheFiles(dir);
            Assert.DoesNotContain(before, after);
            Assert.Equal([Path.GetFileName(liveTmp), after.Single(f => f.StartsWith("x4-", StringComparison.Ordinal))], after);
            AssertSameOutputs(off, second, Outputs(ir2));
            using var third = CompiledModel.Compile(ir2, Options());
            Assert.True(third.InterleavedFromCache);
        });
    }

    [SkippableFact]
    public void A_folder_the_options_name_keeps_the_files_of_other_models()
    {
        // one folder for several models (as OpenVINO's CACHE_DIR is used): a model's write must not delete another's
        WithModel(false, dir =>
        {
            var shared = Path.Combine(dir, "shared-cache");
            var other = WriteModel(false, seed: 9);
            try
            {
                using (var ir = IrModel.Load(dir))
                using (var a = CompiledModel.Compile(ir, Options(folder: shared))) Assert.True(a.WroteWeightCache);
                using (var ir = IrModel.Load(other))
                using (var b = CompiledModel.Compile(ir, Options(folder: shared))) Assert.True(b.WroteWeightCache);
                Assert.Equal(2, Directory.GetFiles(shared, "x4-*.bin").Length);
                using var ir1 = IrModel.Load(dir);
                using var again = CompiledModel.Compile(ir1, Options(folder: shared));
                Assert.True(again.InterleavedFromCache);
            }
            finally { try { Directory.Delete(other, true); } catch (IOException) { } }
        });
    }

    [Fact]
    public void The_free_space_check_sees_the_file_system_of_a_folder()
    {
        var dir = Directory.CreateTempSubdirectory("hub-wcache-free-").FullName;
        try
        {
            var free = WeightCacheFile.FreeBytes(dir);
            if (OperatingSystem.IsLinux()) Assert.NotNull(free);
            Assert.True(free is null || free > 0);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Another_repack_plan_is_another_key()
    {
        WithModel(false, dir =>
        {
            using var ir = IrModel.Load(dir);
            using (var a = CompiledModel.Compile(ir, Options())) Assert.True(a.WroteWeightCache);
            var first = CacheFiles(dir).Single();
            // one copy fewer (as on a CPU whose outcome differs): the file of the full plan must not be mapped
            var entries = new[] { new WeightCacheFile.Entry("w", false, N, K, DType.F16, 0, 0, 0, QuantKernels.X4Bytes(N, K)) };
            var sha = (string)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, IrFormat.JsonFile)))!["weights"]!["sha256"]!;
            var key = WeightCacheFile.Key(sha, entries, QuantKernels.X4Bytes(N, K));
            Assert.NotEqual(first, WeightCacheFile.FileName(key));
            Assert.Null(WeightCacheFile.TryMap(CacheFolder(dir), key, entries, QuantKernels.X4Bytes(N, K)));
        });
    }

    [SkippableFact]
    public void An_unwritable_cache_folder_compiles_and_writes_nothing()
    {
        WithModel(false, dir =>
        {
            // a folder under a regular file can never be created (chmod would not stop root)
            var blocker = Path.Combine(dir, "not-a-folder");
            File.WriteAllText(blocker, "x");
            var folder = Path.Combine(blocker, "cache");
            using var ir = IrModel.Load(dir);
            using var off = CompiledModel.Compile(ir, Options(cache: false));
            using var cm = CompiledModel.Compile(ir, Options(folder: folder));
            Assert.False(cm.WroteWeightCache);
            Assert.False(cm.InterleavedFromCache);
            Assert.False(Directory.Exists(folder));
            Assert.Empty(CacheFiles(dir));
            AssertSameOutputs(off, cm, Outputs(ir));
        });
    }

    [SkippableFact]
    public void A_disk_the_file_would_leave_too_full_gets_no_file_and_no_folder()
    {
        WithModel(false, dir =>
        {
            long reserve = WeightCacheFile.FreeSpaceReserve;
            WeightCacheFile.FreeSpaceReserve = long.MaxValue / 4;   // per thread
            try
            {
                using var ir = IrModel.Load(dir);
                using var cm = CompiledModel.Compile(ir, Options());
                Assert.False(cm.WroteWeightCache);
                Assert.True(cm.InterleavedBytes > 0);
                Assert.False(Directory.Exists(CacheFolder(dir)));
            }
            finally { WeightCacheFile.FreeSpaceReserve = reserve; }
        });
    }

    [SkippableFact]
    public void A_read_only_cache_folder_compiles_and_writes_nothing()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "Unix file modes");
        WithModel(false, dir =>
        {
            var folder = Path.Combine(dir, "ro");
            Directory.CreateDirectory(folder);
            SetMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            try
            {
                bool bites;
                try { File.WriteAllText(Path.Combine(folder, "probe"), "x"); File.Delete(Path.Combine(folder, "probe")); bites = false; }
                catch (UnauthorizedAccessException) { bites = true; }
                Skip.IfNot(bites, "mode 555 does not stop this user (root)");
                using var ir = IrModel.Load(dir);
                using var cm = CompiledModel.Compile(ir, Options(folder: folder));
                Assert.False(cm.WroteWeightCache);
                Assert.Empty(Directory.GetFiles(folder));
            }
            finally { SetMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); }
        });
    }

    private static void SetMode(string path, UnixFileMode mode)
    {
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
    }

    [SkippableFact]
    public void A_failed_write_leaves_no_temporary_file()
    {
        WithModel(true, dir =>
        {
            using var ir = IrModel.Load(dir);
            // the file's final name taken by a non-empty folder: the rename into place fails after the whole write
            using (var a = CompiledModel.Compile(ir, Options())) Assert.True(a.WroteWeightCache);
            var name = CacheFiles(dir).Single();
            var path = Path.Combine(CacheFolder(dir), name);
            File.Delete(path);
            Directory.CreateDirectory(path);
            File.WriteAllText(Path.Combine(path, "occupant"), "x");
            using var off = CompiledModel.Compile(ir, Options(cache: false));
            using var cm = CompiledModel.Compile(ir, Options());
            Assert.False(cm.InterleavedFromCache);
            Assert.False(cm.WroteWeightCache);
            Assert.Empty(Directory.GetFiles(CacheFolder(dir)));   // no temporary file left behind
            Assert.True(File.Exists(Path.Combine(path, "occupant")));
            AssertSameOutputs(off, cm, Outputs(ir));
        });
    }

    [SkippableFact]
    public void Option_off_or_nothing_to_repack_writes_nothing()
    {
        WithModel(false, dir =>
        {
            using var ir = IrModel.Load(dir);
            using (var off = CompiledModel.Compile(ir, Options(cache: false))) Assert.False(off.WroteWeightCache);
            Assert.False(Directory.Exists(CacheFolder(dir)));
            CompiledModel.RepackInt8 = false;   // reset by WithModel
            using (var plain = CompiledModel.Compile(ir, Options()))
            {
                Assert.Equal(0, plain.InterleavedBytes);
                Assert.False(plain.WroteWeightCache);
            }
            Assert.False(Directory.Exists(CacheFolder(dir)));
        });
    }

    [SkippableFact]
    public void Hub_weight_cache_0_in_the_environment_writes_nothing()
    {
        Skip.If(Environment.GetEnvironmentVariable("HUB_WCACHE_CHILD") == "1", "inside the child");
        Skip.IfNot(Packs(false), "Q8_0 is repacked on AVX-VNNI only");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "test", typeof(WeightCacheTests).Assembly.Location, "--filter", $"FullyQualifiedName={typeof(WeightCacheTests).FullName}.{nameof(Child_with_the_cache_off_in_the_environment)}", "--nologo" })
            psi.ArgumentList.Add(a);
        psi.Environment["HUB_WEIGHT_CACHE"] = "0";
        psi.Environment["HUB_WCACHE_CHILD"] = "1";
        psi.Environment["HUB_ISA_SWEEP_CHILD"] = "1";
        using var p = Process.Start(psi)!;
        var text = new StringBuilder();
        p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (text) text.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (text) text.AppendLine(e.Data); };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); Assert.Fail("the child timed out"); }
        p.WaitForExit();
        // a skipped or unmatched child also exits 0: insist on one passed test
        Assert.True(p.ExitCode == 0 && text.ToString().Contains("Passed:     1"), text.ToString());
    }

    /// <summary>Runs in the child of <see cref="Hub_weight_cache_0_in_the_environment_writes_nothing"/> only.</summary>
    [SkippableFact]
    public void Child_with_the_cache_off_in_the_environment()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_WCACHE_CHILD") == "1", "runs in a child with HUB_WEIGHT_CACHE=0");
        Assert.False(CompiledModel.WeightCacheFromEnvironment);
        bool r8 = CompiledModel.RepackInt8;
        CompiledModel.RepackInt8 = true;
        var dir = WriteModel(false);
        try
        {
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, Options());
            Assert.True(cm.InterleavedBytes > 0);
            Assert.False(cm.WroteWeightCache);
            Assert.False(Directory.Exists(CacheFolder(dir)));
        }
        finally
        {
            CompiledModel.RepackInt8 = r8;
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}

/// <summary>
/// Cold-start figures of an exported IR folder given in HUB_BENCH_IR (HUB_BENCH=1 only; run it in a fresh process after
/// evicting the files from the page cache): load (IR load + compile + request) and the first decode step, which on a
/// cold page cache is where a mapped weight cache faults its pages in, then the next 8 steps. Prints, asserts nothing.
/// </summary>
public class WeightCacheColdStartBench(Xunit.Abstractions.ITestOutputHelper output)
{
    [SkippableFact]
    public void Cold_start_of_an_ir_folder()
    {
        var dir = Environment.GetEnvironmentVariable("HUB_BENCH_IR");
        Skip.If(Environment.GetEnvironmentVariable("HUB_BENCH") != "1" || dir is null, "set HUB_BENCH=1 and HUB_BENCH_IR=<ir folder>");
        var sw = Stopwatch.StartNew();
        using var ir = IrModel.Load(dir!);
        using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2), MaxContext = 256 });
        using var req = cm.CreateInferRequest();
        double load = sw.Elapsed.TotalMilliseconds;
        var names = ir.Graph.Inputs.Select(i => i.Name).ToList();
        int[] id = { 1 }, p = { 0 };
        var ones = Enumerable.Repeat(1f, 16).ToArray();
        sw.Restart();
        BenchFeed.DecodeStep(req, names, id, p, ref ones);
        double first = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        for (int s = 0; s < 8; s++) BenchFeed.DecodeStep(req, names, id, p, ref ones);
        double next = sw.Elapsed.TotalMilliseconds;
        output.WriteLine($"COLDSTART cache={(cm.InterleavedFromCache ? "mapped" : cm.WroteWeightCache ? "written" : "none")} load_ms={load:F0} first_step_ms={first:F0} load_plus_first_ms={load + first:F0} next8_tok_s={8000 / next:F1}{MappingPages(Path.Combine(dir!, IrFormat.CacheFolder))}");
    }

    // Resident and PMD-mapped (2 MiB) bytes of this process's mappings of files under prefix (/proc/self/smaps, Linux).
    private static string MappingPages(string prefix)
    {
        if (!OperatingSystem.IsLinux()) return "";
        long rss = 0, pmd = 0;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 5 && parts[0].Contains('-') && !parts[0].EndsWith(':'))
                inside = parts.Length == 6 && parts[5].Trim().StartsWith(prefix, StringComparison.Ordinal);
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal)) rss += long.Parse(line[4..].Trim().Split(' ')[0]);
            else if (inside && line.StartsWith("FilePmdMapped:", StringComparison.Ordinal)) pmd += long.Parse(line[14..].Trim().Split(' ')[0]);
        }
        return $" cache_rss_mib={rss / 1024.0:F0} cache_pmd_mapped_mib={pmd / 1024.0:F0}";
    }
}
