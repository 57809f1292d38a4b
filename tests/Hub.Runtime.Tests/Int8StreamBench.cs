using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Hub.Runtime.Kernels;
using Hub.Runtime.Threading;

namespace Hub.Runtime.Tests;

/// <summary>
/// How fast the int8 (Q8_0) decode GEMV streams a 1b-sized set of weights from DRAM (HUB_BENCH=1 only): the 1b model's
/// Linear shapes (22 layers of qkv 2560×2048, o 2048×2048, gate_up 11264×2048, down 2048×5632, then logits
/// 32000×2048, ~1.1 GB with F16 scales; HUB_BENCH_MODEL=small: the 134M model's, 12 layers at K = 768) run back to back on the runtime's own worker pool with QuantLinearExec's unit
/// split and homed claims (WorkerPool.RunHomed), variants alternating per pass over all weights, their order rotating per round (medians of HUB_BENCH_ROUNDS,
/// default 7, and each variant's median per-round speed ratio against the first one; HUB_BENCH_THREADS=1 gives the
/// tightest ratios on a shared host). Variants: "kernel"
/// (the default GEMV: at groups of 32 the VNNI pair loop where AVX-VNNI is supported and K ≤ QuantKernels.PairMaxK, else the AVX2 one-row loop; "pairs": the pair loop on every K; with HUB_BENCH_GROUP=0/64/128 the four-row pass, AVX-VNNI
/// where supported) and "avx2" (the AVX2 sign trick: the one-row loop at groups of 32); "groups" (the same bytes as per-channel int8: the four-row pass);
/// "f32" (the same byte count as F32 weights [n/4, k] through the default F32 decode GEMV, Rows1W on AVX-512);
/// "read" and "halves" (a plain read of the same bytes in the same units, or
/// in two static halves: the `hub bench` probe's pattern), "readpf" (the read with the one-row loop's prefetcht0 4 KiB
/// ahead) and "reads" (the read of the data and then of the units' F16 scales: what an int8 GEMV must stream); "hot&lt;variant&gt;" (hotkernel, hotavx2, hotgroups, hotf32: the same work on 64 rows (f32: 16) per matrix that stay in
/// L2: the kernel's compute rate); access patterns without arithmetic: "readw" (GemvF32 Rows1W's: 512-bit loads,
/// prefetcht0 8 KiB ahead), "readn" (the same with 256-bit loads), "readpair" (the VNNI pair loop's: two rows
/// interleaved 64 bytes at a time; "readpair%&lt;g&gt;" g bytes at a time, "readpair^&lt;n&gt;" other prefetch schemes,
/// see ReadPair), "readpairw" (the pair pattern with 512-bit
/// loads); suffix "@&lt;n&gt;": n units per worker instead of 16; "x4" and "x4pf" (a prototype of a row-interleaved layout:
/// per block the 4 rows' F16 scales then their 4 × 32 bytes, as llama.cpp's block_q8_0x4 — one sequential stream per
/// pass, timed on its own copy of the weights, the AVX2 sign trick's integer work), "x4v" and "x4vpf" (the same layout
/// with the VNNI pair loop's arithmetic; pf: prefetcht0 8 KiB ahead). Session 13, timed on QuantKernels.InterleaveX4's
/// copy: "x4k" (the runtime's x4 kernel through GemvInteger), "x4c" (X4C: the 4 rows' lanes reduced as integers
/// before one convert and FMA per block) and "x4d" (X4D: the runtime's loop on two streams per unit); "x4b" / "x4bf" (InterleaveB's lane-per-row layout, F16 / F32 block headers);
/// "x4k", "x4c", "x4b", "x4bf" also "hot" (64 rows per matrix, L2-resident). Each run prints the x4 variants' outputs against the sign trick.
/// </summary>
public unsafe class Int8StreamBench(Xunit.Abstractions.ITestOutputHelper output)
{
    private sealed class Work(Action<int, int> body) : ParallelWork
    {
        public override void Execute(int index, int worker) => body(index, worker);
    }

    [SkippableFact]
    public void Int8_decode_gemv_streaming()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("HUB_BENCH") == "1", "set HUB_BENCH=1 to run the benchmark");
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "needs AVX2+FMA");
        int threads = BenchFeed.EnvInt("HUB_BENCH_THREADS", 2);
        int rounds = BenchFeed.EnvInt("HUB_BENCH_ROUNDS", 7);
        int layers = BenchFeed.EnvInt("HUB_BENCH_LAYERS", 22);
        // HUB_BENCH_GROUP: symmetric int8 with groups of that many values (0 = per channel) instead of Q8_0's 32
        int group = BenchFeed.EnvInt("HUB_BENCH_GROUP", 32);
        var mats = new List<(int N, int K)>();
        bool small = Environment.GetEnvironmentVariable("HUB_BENCH_MODEL") == "small";   // the 134M model's shapes instead
        for (int l = 0; l < (small ? 12 : layers); l++)
            mats.AddRange(small ? [(2304, 768), (768, 768), (4096, 768), (768, 2048)] : [(2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632)]);
        mats.Add((32000, small ? 768 : 2048));
        long data = mats.Sum(m => (long)m.N * m.K), scales = data / 32;
        var names = Environment.GetEnvironmentVariable("HUB_BENCH_VARIANTS")?.Split(',') ?? ["kernel", "avx2", "read", "halves", "hotkernel", "hotavx2"];
        bool inter = names.Any(n => n is "x4" or "x4pf" or "x4v" or "x4vpf");
        // "x4k" / "x4c" (hot prefix too): the runtime's x4 kernel (GemvInteger) / the integer-reduction prototype (X4C) on
        // QuantKernels.InterleaveX4's copy
        bool x4k = names.Any(n => n.Contains("x4k", StringComparison.Ordinal) || n.Contains("x4c", StringComparison.Ordinal) || n.Contains("x4d", StringComparison.Ordinal));
        byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)data, 4096);
        ushort* s = (ushort*)NativeMemory.AlignedAlloc((nuint)(scales * 2), 4096);
        byte* wx = inter ? (byte*)NativeMemory.AlignedAlloc((nuint)(data + scales * 2), 4096) : null;
        long x4Total = mats.Sum(m => QuantKernels.X4Bytes(m.N, m.K));
        byte* wk = x4k ? (byte*)NativeMemory.AlignedAlloc((nuint)x4Total, 4096) : null;
        // "x4b" / "x4bf" (hot prefix too): the lane-per-row prototype, F16 / F32 block headers (see InterleaveB)
        bool x4b = names.Any(n => n.Contains("x4b", StringComparison.Ordinal)), x4bf = names.Any(n => n.Contains("x4bf", StringComparison.Ordinal));
        long bTotal = data + scales * 2, bfTotal = data + scales * 4;
        byte* wb = x4b ? (byte*)NativeMemory.AlignedAlloc((nuint)bTotal, 4096) : null;
        byte* wbf = x4bf ? (byte*)NativeMemory.AlignedAlloc((nuint)bfTotal, 4096) : null;
        // f32 variants: the same byte count as F32 weights [n/4, k] through GemvF32's default (Rows1W on AVX-512)
        bool f32 = names.Any(n => n.EndsWith("f32", StringComparison.Ordinal));
        float* wf = f32 ? (float*)NativeMemory.AlignedAlloc((nuint)data, 4096) : null;
        int maxK = mats.Max(m => m.K);
        byte* act = (byte*)NativeMemory.AlignedAlloc((nuint)QuantKernels.ActivationBytes(1, maxK, maxK / 32), 64);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)maxK * 4, 64);
        float* y = (float*)NativeMemory.AlignedAlloc(32000 * 4, 64);
        using var pool = new WorkerPool(threads);
        try
        {
            var rnd = new Random(7);
            for (long i = 0; i < data; i += 4096) rnd.NextBytes(new Span<byte>(w + i, (int)Math.Min(4096, data - i)));
            for (long i = 0; i < scales; i++) s[i] = (ushort)(0x2000 + (i % 1000));   // small finite halves
            for (int i = 0; i < maxK; i++) x[i] = MathF.Sin(i * 0.37f);
            if (inter) Interleave(mats, w, s, wx);
            if (wb != null) InterleaveB(mats, w, s, wb, 8);
            if (wbf != null) InterleaveB(mats, w, s, wbf, 16);
            if (x4k)
            {
                long o = 0, oS = 0, oK = 0;
                foreach (var (n, k) in mats)
                {
                    QuantKernels.InterleaveX4(new QuantMatrix(w + o, s + oS, null, n, k, 32, false, true), wk + oK, 0, n / 4);
                    o += (long)n * k; oS += (long)n * k / 32; oK += QuantKernels.X4Bytes(n, k);
                }
            }
            if (f32) for (long i = 0; i < data / 4; i++) wf[i] = (sbyte)w[i] * (1f / 64);
            var times = names.Select(_ => new List<double>()).ToArray();
            double sink = 0;
            for (int round = 0; round < rounds; round++)
                for (int cc = 0; cc < names.Length; cc++)
                {
                    // the order rotates per round: a variant's rate depended on which one ran before it
                    int c = (cc + round) % names.Length;
                    string name = names[c];
                    // suffix "@<n>": n units per worker instead of 16 (QuantLinearExec's default)
                    int upw = 16;
                    if (name.IndexOf('@') is int ai and > 0) { upw = int.Parse(name[(ai + 1)..]); name = name[..ai]; }
                    // "readpair%<g>": the pair pattern in runs of g bytes per row
                    int gran = 64, pfm = 0;
                    if (name.IndexOf('^') is int qi and > 0) { pfm = int.Parse(name[(qi + 1)..]); name = name[..qi]; }
                    if (name.IndexOf('%') is int pi and > 0) { gran = int.Parse(name[(pi + 1)..]); name = name[..pi]; }
                    if (name is "readw" or "readpairw" && !Avx512F.IsSupported) throw new ArgumentException($"HUB_BENCH_VARIANTS: '{name}' needs AVX-512F");
                    // "kernel" / "avx2": the default int8 GEMV (AVX-VNNI where supported) / on the AVX2 sign trick; "hot" prefix: L2-resident
                    string sname = name.StartsWith("hot", StringComparison.Ordinal) ? name[3..] : name;
                    // "pairs": the VNNI pair loop on every K (the default takes it up to QuantKernels.PairMaxK)
                    int? pairMaxK = sname == "pairs" ? int.MaxValue : null;
                    bool? vnni = sname is "kernel" or "groups" or "pairs" ? QuantKernels.Int8Vnni : sname == "avx2" ? false : null;
                    // "groups": the same bytes as per-channel int8 (the four-row pass, as a default `--weight-format int8` export)
                    int mg = sname == "groups" ? 0 : group;
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    long off = 0, offS = 0, offK = 0, offB = 0, offBf = 0;
                    double[] sums = new double[threads];
                    foreach (var (n, k) in mats)
                    {
                        var qm = new QuantMatrix(w + off, s + offS, null, n, k, mg, false, true);
                        long offS2 = offS;
                        byte* wm = w + off, xm = wx == null ? null : wx + off + offS * 2, km = wk == null ? null : wk + offK;
                        if (km != null) offK += QuantKernels.X4Bytes(n, k);
                        byte* bm = wb == null ? null : wb + offB, bfm = wbf == null ? null : wbf + offBf;
                        offB += (long)(n / 4) * (k / 32) * 136; offBf += (long)(n / 4) * (k / 32) * 144;
                        QuantKernels.QuantizeActivations(qm, x, 1, act);
                        int units = Math.Min(threads * upw, (n + 31) / 32);
                        int unitRows = ((n + units - 1) / units + 3) & ~3;
                        units = (n + unitRows - 1) / unitRows;
                        if (name == "halves") { unitRows = ((n + threads - 1) / threads + 3) & ~3; units = (n + unitRows - 1) / unitRows; }
                        int kk = k;
                        if (sname == "f32")
                        {
                            // F32 [n/4, k] rows of the same bytes, split as QuantLinearExec/LinearExec split rows
                            int nf = n / 4, uf = Math.Min(threads * upw, (nf + 31) / 32), rf = ((nf + uf - 1) / uf + 3) & ~3;
                            uf = (nf + rf - 1) / rf;
                            float* wfm = wf + off / 4;
                            bool hotf = name == "hotf32";
                            pool.RunHomed(new Work((u, wk) =>
                            {
                                int c0 = u * rf, c1 = Math.Min(nf, c0 + rf);
                                if (hotf) for (int r = c0; r < c1; r += 16) GemvF32.Rows(x, kk, wfm, null, y, 0, Math.Min(16, c1 - r), GemvF32.Default);
                                else GemvF32.Rows(x, kk, wfm, null, y, c0, c1, GemvF32.Default);
                            }), uf);
                            off += (long)n * k; offS += (long)n * k / 32;
                            continue;
                        }
                        pool.RunHomed(new Work((u, wk) =>
                        {
                            int c0 = u * unitRows, c1 = Math.Min(n, c0 + unitRows);
                            if (name is "x4b" or "x4bf") InterleavedB(name == "x4b" ? bm : bfm, kk, act, y, c0, c1, name == "x4b" ? 8 : 16);
                            else if (name is "hotx4b" or "hotx4bf")
                                for (int r = c0; r < c1; r += 64) InterleavedB(name == "hotx4b" ? bm : bfm, kk, act, y, 0, Math.Min(64, c1 - r), name == "hotx4b" ? 8 : 16);
                            else if (name == "x4k") QuantKernels.GemvInteger(new QuantMatrix(qm, km), 1, act, null, y, n, c0, c1);
                            else if (name == "x4c") X4C(km, kk, act, y, c0, c1);
                            else if (name == "x4d") X4D(km, kk, act, y, c0, c1);
                            else if (name == "hotx4k")
                            {
                                var hm = new QuantMatrix(new QuantMatrix(wm, s, null, 64, kk, 32, false, true), km);
                                for (int r = c0; r < c1; r += 64) QuantKernels.GemvInteger(hm, 1, act, null, y, 64, 0, Math.Min(64, c1 - r));
                            }
                            else if (name == "hotx4c")
                                for (int r = c0; r < c1; r += 64) X4C(km, kk, act, y, 0, Math.Min(64, c1 - r));
                            else if (name.StartsWith("hot", StringComparison.Ordinal))
                            {
                                // the kernel's compute rate: the same rows' worth of work on 64 rows that stay in L2
                                var hm = new QuantMatrix(wm, s, null, 64, kk, mg, false, true);
                                for (int r = c0; r < c1; r += 64) QuantKernels.GemvIntegerRowsAvx2(hm, 1, act, null, y, 64, 0, Math.Min(64, c1 - r), vnni ?? QuantKernels.Int8Vnni, pairMaxK);
                            }
                            else if (vnni is { } v) QuantKernels.GemvIntegerRowsAvx2(qm, 1, act, null, y, n, c0, c1, v, pairMaxK);
                            else if (name is "read" or "halves") sums[wk] += Read(wm + (long)c0 * kk, wm + (long)c1 * kk);
                            else if (name == "readpf") sums[wk] += ReadPf(wm + (long)c0 * kk, wm + (long)c1 * kk);
                            else if (name == "readw") sums[wk] += ReadW(wm + (long)c0 * kk, wm + (long)c1 * kk);
                            else if (name == "readpair") sums[wk] += ReadPair(wm, kk, c0, c1, gran, pfm);
                            else if (name == "readpairw") sums[wk] += ReadPairW(wm, kk, c0, c1);
                            else if (name == "readn") sums[wk] += ReadN(wm + (long)c0 * kk, wm + (long)c1 * kk);
                            else if (name == "reads") sums[wk] += Read(wm + (long)c0 * kk, wm + (long)c1 * kk) + Read((byte*)(s + offS2 + (long)c0 * kk / 32), (byte*)(s + offS2 + (long)c1 * kk / 32));
                            else if (name.StartsWith("read4", StringComparison.Ordinal)) sums[wk] += Read4(wm, kk, c0, c1, name == "read4pf");
                            else if (name is "x4" or "x4pf") Interleaved(xm, kk, act, y, c0, c1, name == "x4pf");
                            else if (name is "x4v" or "x4vpf") InterleavedVnni(xm, kk, act, y, c0, c1, name == "x4vpf");
                            else throw new ArgumentException($"HUB_BENCH_VARIANTS: unknown variant '{name}'");
                        }), units);
                        off += (long)n * k; offS += (long)n * k / 32;
                    }
                    times[c].Add(sw.Elapsed.TotalSeconds);
                    sink += sums.Sum() + y[0];
                }
            for (int c = 0; c < names.Length; c++)
            {
                double med = times[c].Order().ElementAt(times[c].Count / 2), best = times[c].Min();
                // the plain reads, the f32 GEMV and the per-channel pass read (nearly) no scale bytes
                long bytes = names[c].Split('@', '%', '^')[0] is "x4k" or "hotx4k" or "x4c" or "hotx4c" or "x4d" ? x4Total : names[c].Split('@', '%', '^')[0] is "x4bf" or "hotx4bf" ? bfTotal : names[c].Split('@', '%', '^')[0] is "read" or "readpf" or "readw" or "readpair" or "readpairw" or "readn" or "halves" or "f32" or "hotf32" or "groups" or "hotgroups" ? data : data + scales * 2;
                output.WriteLine($"{names[c],-8} {threads} thr: median {med * 1e3,7:F2} ms ({bytes / med / 1e9,5:F2} GB/s), best {best * 1e3,7:F2} ms ({bytes / best / 1e9,5:F2} GB/s)");
            }
            // paired per-round speed ratios against the first variant (the rounds alternate, so each pair shares its host load)
            for (int c = 1; c < names.Length; c++)
            {
                var ratios = times[0].Zip(times[c], (t0, tc) => t0 / tc).Order().ToList();
                output.WriteLine($"{names[c]} / {names[0]}: median speed ratio {ratios[ratios.Count / 2]:F3} (quartiles {ratios[ratios.Count / 4]:F3}–{ratios[3 * ratios.Count / 4]:F3})");
            }
            output.WriteLine($"(sink {sink:E1}, {(data + scales * 2) / 1048576.0:F0} MiB per pass incl. F16 g32 scales; read/halves/f32/groups: the data only)");
            if ((wb != null || wbf != null || wk != null) && group == 32 && AvxVnni.IsSupported)
            {
                // the prototypes and the x4 kernel against the row-major kernel on each matrix shape (same weights, same activations)
                long o = 0, oS = 0, oB = 0, oBf = 0, oK = 0;
                var seen = new HashSet<(int, int)>();
                foreach (var (nm, km0) in mats)
                {
                    if (!seen.Add((nm, km0))) { o += (long)nm * km0; oS += (long)nm * km0 / 32; oB += (long)(nm / 4) * (km0 / 32) * 136; oBf += (long)(nm / 4) * (km0 / 32) * 144; oK += QuantKernels.X4Bytes(nm, km0); continue; }
                    var q0 = new QuantMatrix(w + o, s + oS, null, nm, km0, 32, false, true);
                    QuantKernels.QuantizeActivations(q0, x, 1, act);
                    float* yk = (float*)NativeMemory.Alloc((nuint)nm * 4), yv = (float*)NativeMemory.Alloc((nuint)nm * 4);
                    QuantKernels.GemvIntegerRowsAvx2(q0, 1, act, null, yk, nm, 0, nm, false, null);
                    foreach (var (label, buf) in new[] { ("x4b", (nint)(wb == null ? null : wb + oB)), ("x4bf", (nint)(wbf == null ? null : wbf + oBf)), ("x4k", (nint)(wk == null ? null : wk + oK)), ("x4c", (nint)(wk == null ? null : wk + oK)), ("x4d", (nint)(wk == null ? null : wk + oK)) })
                    {
                        if (buf == 0) continue;
                        if (label == "x4k") QuantKernels.GemvInteger(new QuantMatrix(q0, (byte*)buf), 1, act, null, yv, nm, 0, nm);
                        else if (label == "x4c") X4C((byte*)buf, km0, act, yv, 0, nm);
                        else if (label == "x4d") X4D((byte*)buf, km0, act, yv, 0, nm);
                        else InterleavedB((byte*)buf, km0, act, yv, 0, nm, label == "x4b" ? 8 : 16);
                        double dmax = 0, ymax = 0;
                        for (int j = 0; j < nm; j++) { dmax = Math.Max(dmax, Math.Abs(yk[j] - yv[j])); ymax = Math.Max(ymax, Math.Abs(yk[j])); }
                        output.WriteLine($"{label} vs sign trick on {nm}×{km0}: max |Δ| {dmax:E2} of max |y| {ymax:E2}");
                    }
                    NativeMemory.Free(yk); NativeMemory.Free(yv);
                    o += (long)nm * km0; oS += (long)nm * km0 / 32; oB += (long)(nm / 4) * (km0 / 32) * 136; oBf += (long)(nm / 4) * (km0 / 32) * 144; oK += QuantKernels.X4Bytes(nm, km0);
                }
            }
            if (inter && group == 32 && AvxVnni.IsSupported)
            {
                // the x4 prototypes against the kernel on the first matrix (same weights, same quantized activations)
                var (n0m, k0m) = mats[0];
                var q0 = new QuantMatrix(w, s, null, n0m, k0m, 32, false, true);
                QuantKernels.QuantizeActivations(q0, x, 1, act);
                float* yk = (float*)NativeMemory.Alloc((nuint)n0m * 4), yv = (float*)NativeMemory.Alloc((nuint)n0m * 4);
                QuantKernels.GemvIntegerRowsAvx2(q0, 1, act, null, yk, n0m, 0, n0m);
                InterleavedVnni(wx, k0m, act, yv, 0, n0m, false);
                double dmax = 0, ymax = 0;
                for (int j = 0; j < n0m; j++) { dmax = Math.Max(dmax, Math.Abs(yk[j] - yv[j])); ymax = Math.Max(ymax, Math.Abs(yk[j])); }
                output.WriteLine($"x4v vs kernel on {n0m}×{k0m}: max |Δ| {dmax:E2} of max |y| {ymax:E2}");
                NativeMemory.Free(yk); NativeMemory.Free(yv);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(s); NativeMemory.AlignedFree(act);
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y);
            if (wx != null) NativeMemory.AlignedFree(wx);
            if (wf != null) NativeMemory.AlignedFree(wf);
            if (wk != null) NativeMemory.AlignedFree(wk);
            if (wb != null) NativeMemory.AlignedFree(wb);
            if (wbf != null) NativeMemory.AlignedFree(wbf);
        }
    }

    private static double Read(byte* p, byte* e)
    {
        var a = Vector256<int>.Zero;
        var b = Vector256<int>.Zero;
        for (; p + 64 <= e; p += 64) { a = Avx2.Add(a, Avx.LoadVector256((int*)p)); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 32))); }
        return Vector256.Sum(a + b);
    }

    // A plain read with the int8 row loop's software prefetch (prefetcht0 4 KiB ahead, one line per 64 bytes).
    private static double ReadPf(byte* p, byte* e)
    {
        var a = Vector256<int>.Zero;
        var b = Vector256<int>.Zero;
        for (; p + 64 <= e; p += 64) { Sse.Prefetch0(p + 4096); a = Avx2.Add(a, Avx.LoadVector256((int*)p)); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 32))); }
        return Vector256.Sum(a + b);
    }

    // Rows1W's pattern: 512-bit loads, 4 lines prefetched 8 KiB ahead per 256 bytes.
    private static double ReadW(byte* p, byte* e)
    {
        var a = Vector512<int>.Zero;
        var b = Vector512<int>.Zero;
        for (; p + 256 <= e; p += 256)
        {
            Sse.Prefetch0(p + 8192); Sse.Prefetch0(p + 8192 + 64); Sse.Prefetch0(p + 8192 + 128); Sse.Prefetch0(p + 8192 + 192);
            a = Avx512F.Add(a, Avx512F.LoadVector512((int*)p)); b = Avx512F.Add(b, Avx512F.LoadVector512((int*)(p + 64)));
            a = Avx512F.Add(a, Avx512F.LoadVector512((int*)(p + 128))); b = Avx512F.Add(b, Avx512F.LoadVector512((int*)(p + 192)));
        }
        return Vector512.Sum(a + b);
    }

    // The pair loop's pattern: rows j, j + 1 interleaved 64 bytes (g: g bytes) at a time, 2 lines prefetched PairAhead
    // ahead per 128 bytes. pfm (suffix "^<n>") changes the prefetch: 1 none, 2 each row's own stream, 3 twice as far,
    // 4 prefetcht1, 5 prefetchnta; 6 and 7 pair rows j and j + h (half the unit apart: two sequential streams) without
    // software prefetch / with prefetcht0 4 KiB ahead in each.
    private static double ReadPair(byte* w, int k, int c0, int c1, int g, int pfm)
    {
        var a = Vector256<int>.Zero;
        var b = Vector256<int>.Zero;
        nint ahead = QuantKernels.PairAhead(k);
        if (pfm == 3) ahead *= 2;
        if (pfm >= 6)
        {
            // rows j and j + h paired: two streams half a unit apart
            int h = (c1 - c0 + 1) / 2;
            const int d = 4096;
            for (int j = c0; j < c0 + h; j++)
            {
                byte* r0 = w + (long)j * k, r1 = w + (long)Math.Min(j + h, c1 - 1) * k;
                for (nint o = 0; o < k; o += 64)
                {
                    if (pfm == 7) { Sse.Prefetch0(r0 + o + d); Sse.Prefetch0(r1 + o + d); }
                    a = Avx2.Add(a, Avx2.Add(Avx.LoadVector256((int*)(r0 + o)), Avx.LoadVector256((int*)(r0 + o + 32))));
                    b = Avx2.Add(b, Avx2.Add(Avx.LoadVector256((int*)(r1 + o)), Avx.LoadVector256((int*)(r1 + o + 32))));
                }
            }
            return Vector256.Sum(a + b);
        }
        for (int j = c0; j < c1; j += 2)
        {
            byte* r0 = w + (long)j * k, r1 = r0 + k, pf = r0 + ahead;
            for (nint o0 = 0; o0 < k; o0 += g)
            {
                for (nint o = o0; o < o0 + g && o < k; o += 64)
                {
                    if (pfm is 0 or 3) { Sse.Prefetch0(pf + 2 * o); Sse.Prefetch0(pf + 2 * o + 64); }
                    else if (pfm == 2) { Sse.Prefetch0(pf + o); Sse.Prefetch0(pf + k + o); }
                    else if (pfm == 4) { Sse.Prefetch1(pf + 2 * o); Sse.Prefetch1(pf + 2 * o + 64); }
                    else if (pfm == 5) { Sse.PrefetchNonTemporal(pf + 2 * o); Sse.PrefetchNonTemporal(pf + 2 * o + 64); }
                    a = Avx2.Add(a, Avx2.Add(Avx.LoadVector256((int*)(r0 + o)), Avx.LoadVector256((int*)(r0 + o + 32))));
                }
                for (nint o = o0; o < o0 + g && o < k; o += 64)
                    b = Avx2.Add(b, Avx2.Add(Avx.LoadVector256((int*)(r1 + o)), Avx.LoadVector256((int*)(r1 + o + 32))));
            }
        }
        return Vector256.Sum(a + b);
    }

    // The pair pattern with 512-bit loads (one per row and 64 bytes).
    private static double ReadPairW(byte* w, int k, int c0, int c1)
    {
        var a = Vector512<int>.Zero;
        var b = Vector512<int>.Zero;
        nint ahead = QuantKernels.PairAhead(k);
        for (int j = c0; j < c1; j += 2)
        {
            byte* r0 = w + (long)j * k, r1 = r0 + k, pf = r0 + ahead;
            for (nint o = 0; o < k; o += 64)
            {
                Sse.Prefetch0(pf + 2 * o); Sse.Prefetch0(pf + 2 * o + 64);
                a = Avx512F.Add(a, Avx512F.LoadVector512((int*)(r0 + o)));
                b = Avx512F.Add(b, Avx512F.LoadVector512((int*)(r1 + o)));
            }
        }
        return Vector512.Sum(a + b);
    }

    // Rows1W's pattern (one stream, 4 lines prefetched 8 KiB ahead per 256 bytes) with 256-bit loads.
    private static double ReadN(byte* p, byte* e)
    {
        var a = Vector256<int>.Zero;
        var b = Vector256<int>.Zero;
        for (; p + 256 <= e; p += 256)
        {
            Sse.Prefetch0(p + 8192); Sse.Prefetch0(p + 8192 + 64); Sse.Prefetch0(p + 8192 + 128); Sse.Prefetch0(p + 8192 + 192);
            a = Avx2.Add(a, Avx.LoadVector256((int*)p)); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 32)));
            a = Avx2.Add(a, Avx.LoadVector256((int*)(p + 64))); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 96)));
            a = Avx2.Add(a, Avx.LoadVector256((int*)(p + 128))); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 160)));
            a = Avx2.Add(a, Avx.LoadVector256((int*)(p + 192))); b = Avx2.Add(b, Avx.LoadVector256((int*)(p + 224)));
        }
        return Vector256.Sum(a + b);
    }

    // The kernel's access pattern without its arithmetic: 4 rows read interleaved 32 bytes at a time, optionally with the
    // kernel's prefetch of the next pass (2 lines per step, one pass ahead).
    private static double Read4(byte* w, int k, int c0, int c1, bool pf)
    {
        var a = Vector256<int>.Zero;
        for (int j = c0; j < c1; j += 4)
        {
            byte* r0 = w + (long)j * k, r1 = r0 + k, r2 = r1 + k, r3 = r2 + k, p = r0 + 4L * k;
            if (j + 4 > c1) r1 = r2 = r3 = r0;
            for (int o = 0; o < k; o += 32, p += 128)
            {
                if (pf) { Sse.Prefetch0(p); Sse.Prefetch0(p + 64); }
                a = Avx2.Add(a, Avx2.Add(Avx2.Add(Avx.LoadVector256((int*)(r0 + o)), Avx.LoadVector256((int*)(r1 + o))),
                    Avx2.Add(Avx.LoadVector256((int*)(r2 + o)), Avx.LoadVector256((int*)(r3 + o)))));
            }
        }
        return Vector256.Sum(a);
    }

    // The x4 layout of rows j..j+3 (j a multiple of 4; a last partial group repeats its last row): per block 4 F16
    // scales (8 bytes) then the 4 rows' 32 bytes: 136 bytes per block and group of 4 rows.
    private static void Interleave(List<(int N, int K)> mats, byte* w, ushort* s, byte* wx)
    {
        long off = 0, offS = 0;
        foreach (var (n, k) in mats)
        {
            int nb = k / 32;
            byte* dst = wx + off + offS * 2;
            for (int j = 0; j < n; j += 4)
                for (int b = 0; b < nb; b++)
                {
                    byte* g = dst + ((long)(j / 4) * nb + b) * 136;
                    for (int r = 0; r < 4; r++)
                    {
                        long row = Math.Min(j + r, n - 1);
                        ((ushort*)g)[r] = s[offS + row * nb + b];
                        Buffer.MemoryCopy(w + off + row * k + b * 32, g + 8 + 32 * r, 32, 32);
                    }
                }
            off += (long)n * k; offS += (long)n * k / 32;
        }
    }

    // The prototype kernel on the x4 layout: per block one activation load, 4 × (|w|, sign, maddubs, maddwd, convert,
    // FMA with s_r·dx_b), the 4 scales converted by LoadHalf8 per block; pf: prefetcht0 one group of 4 rows ahead.
    private static void Interleaved(byte* wx, int k, byte* act, float* y, int c0, int c1, bool pf)
    {
        int nb = k / 32;
        sbyte* xq = (sbyte*)act;
        float* dx = (float*)(act + (((long)k + 63) & ~63L));
        long ahead = 136L * nb;
        var ones = Vector256.Create((short)1);
        for (int j = c0; j < c1; j += 4)
        {
            byte* g = wx + (long)(j / 4) * nb * 136;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < nb; b++, g += 136)
            {
                if (pf) { Sse.Prefetch0(g + ahead); Sse.Prefetch0(g + ahead + 64); Sse.Prefetch0(g + ahead + 128); }
                var xv = Avx.LoadVector256(xq + b * 32);
                var sc = Sse.Multiply(QuantKernels.LoadHalf8((ushort*)g).GetLower(), Vector128.Create(dx[b]));
                a0 = Fma.MultiplyAdd(Dot(Avx.LoadVector256((sbyte*)g + 8), xv, ones), Avx2.BroadcastScalarToVector256(sc), a0);
                a1 = Fma.MultiplyAdd(Dot(Avx.LoadVector256((sbyte*)g + 40), xv, ones), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0x55)), a1);
                a2 = Fma.MultiplyAdd(Dot(Avx.LoadVector256((sbyte*)g + 72), xv, ones), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xAA)), a2);
                a3 = Fma.MultiplyAdd(Dot(Avx.LoadVector256((sbyte*)g + 104), xv, ones), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xFF)), a3);
            }
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
            var sum = Sse.Add(h.GetLower(), h.GetUpper());
            if (j + 4 <= c1) Sse.Store(y + j, sum);
            else for (int r = 0; r < c1 - j; r++) y[j + r] = sum.GetElement(r);
        }
    }

    // The x4 prototype with the VNNI pair loop's arithmetic (AVX-VNNI only): per block one activation load, 4 × (vpxor,
    // vpdpbusd, convert, FMA with s_r·dx_b); the symmetric 128·Σx term from the 4 scales once per block (one FMA for the
    // 4 rows); pf: prefetcht0 8 KiB ahead, 2 lines per block group (136 bytes).
    private static void InterleavedVnni(byte* wx, int k, byte* act, float* y, int c0, int c1, bool pf)
    {
        if (!AvxVnni.IsSupported) throw new ArgumentException("x4v needs AVX-VNNI");
        int nb = k / 32;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, 1, k);
        float* xs = dx + nb;
        var flip = Vector256.Create((byte)0x80);
        for (int j = c0; j < c1; j += 4)
        {
            byte* g = wx + (long)(j / 4) * nb * 136;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var corr = Vector128<float>.Zero;
            for (int b = 0; b < nb; b++, g += 136)
            {
                if (pf) { Sse.Prefetch0(g + 8192); Sse.Prefetch0(g + 8192 + 64); Sse.Prefetch0(g + 8192 + 128); }
                var xv = Avx.LoadVector256(xq + b * 32);
                var s4 = QuantKernels.LoadHalf8((ushort*)g).GetLower();
                corr = Fma.MultiplyAdd(s4, Vector128.Create(xs[b]), corr);
                var sc = Sse.Multiply(s4, Vector128.Create(dx[b]));
                a0 = Fma.MultiplyAdd(DotV(Avx.LoadVector256(g + 8), xv, flip), Avx2.BroadcastScalarToVector256(sc), a0);
                a1 = Fma.MultiplyAdd(DotV(Avx.LoadVector256(g + 40), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0x55)), a1);
                a2 = Fma.MultiplyAdd(DotV(Avx.LoadVector256(g + 72), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xAA)), a2);
                a3 = Fma.MultiplyAdd(DotV(Avx.LoadVector256(g + 104), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xFF)), a3);
            }
            var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
            var sum = Sse.Subtract(Sse.Add(h.GetLower(), h.GetUpper()), Sse.Multiply(corr, Vector128.Create(128f)));
            if (j + 4 <= c1) Sse.Store(y + j, sum);
            else for (int r = 0; r < c1 - j; r++) y[j + r] = sum.GetElement(r);
        }
    }

    private static Vector256<float> DotV(Vector256<byte> w, Vector256<sbyte> xv, Vector256<byte> flip) =>
        Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Xor(w, flip), xv));

    private static Vector256<float> Dot(Vector256<sbyte> wv, Vector256<sbyte> xv, Vector256<short> ones) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(wv), Avx2.Sign(xv, wv)), ones));

    // The lane-per-row prototype layout: per 4-row group and block a header of the 4 rows' scales (hb = 8: F16, 16: F32),
    // then for q = 0..3 the 4 rows' bytes 8q..8q+7 (row r at 32q + 8r): one vpdpbusd per 32 bytes serves the 4 rows,
    // lanes 2r and 2r+1 holding row r.
    private static void InterleaveB(List<(int N, int K)> mats, byte* w, ushort* s, byte* wb, int hb)
    {
        long off = 0, offS = 0, offB = 0;
        foreach (var (n, k) in mats)
        {
            int nb = k / 32, bb = hb + 128;
            for (int j = 0; j < n; j += 4)
                for (int b = 0; b < nb; b++)
                {
                    byte* g = wb + offB + ((long)(j / 4) * nb + b) * bb;
                    for (int r = 0; r < 4; r++)
                    {
                        long row = Math.Min(j + r, n - 1);
                        ushort h = s[offS + row * nb + b];
                        if (hb == 8) ((ushort*)g)[r] = h;
                        else ((float*)g)[r] = QuantKernels.HalfToSingle(h);
                        for (int q = 0; q < 4; q++) Buffer.MemoryCopy(w + off + row * k + b * 32 + 8 * q, g + hb + 32 * q + 8 * r, 8, 8);
                    }
                }
            off += (long)n * k; offS += (long)n * k / 32; offB += (long)(n / 4) * nb * bb;
        }
    }

    // The lane-per-row kernel: per call the activation blocks replicated (x[8q..8q+7] in every qword) and −128·Σx per
    // lane; per block 4 × (vpxor, vpdpbusd) into one accumulator, one convert, the scales as [s0 s0 s1 s1 s2 s2 s3 s3]·dx, one FMA.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void InterleavedB(byte* wb, int k, byte* act, float* y, int c0, int c1, int hb)
    {
        int nb = k / 32, bb = hb + 128;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, 1, k);
        var xrep = stackalloc Vector256<sbyte>[nb * 4];
        var cb = stackalloc Vector256<int>[nb];
        var flip = Vector256.Create((byte)0x80);
        for (int b = 0; b < nb; b++)
        {
            var acc = Vector256<int>.Zero;
            for (int q = 0; q < 4; q++)
            {
                var r = Vector256.Create(*(long*)(xq + b * 32 + 8 * q)).AsSByte();
                xrep[b * 4 + q] = r;
                acc = AvxVnni.MultiplyWideningAndAdd(acc, flip, r);
            }
            cb[b] = Avx2.Subtract(Vector256<int>.Zero, acc);
        }
        for (int j = c0; j < c1; j += 4)
        {
            byte* g = wb + (long)(j / 4) * nb * bb;
            var f = hb == 8 ? RunB8(g, xq, cb, dx, nb) : RunB16(g, xrep, cb, dx, nb);
            var h = Avx.HorizontalAdd(f, f);
            var sum = Sse.Shuffle(h.GetLower(), h.GetUpper(), 0x44);
            if (j + 4 <= c1) Sse.Store(y + j, sum);
            else for (int r = 0; r < c1 - j; r++) y[j + r] = sum.GetElement(r);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> RunB16(byte* g, Vector256<sbyte>* xrep, Vector256<int>* cb, float* dx, int nb)
    {
        var flip = Vector256.Create((byte)0x80);
        var perm = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3);
        Vector256<float> f0 = default;
        for (int b = 0; b < nb; b++, g += 144, xrep += 4)
        {
            Sse.Prefetch0(g + 8192); Sse.Prefetch0(g + 8192 + 64); Sse.Prefetch0(g + 8192 + 128);
            var acc = cb[b];
            acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 16), flip), xrep[0]);
            acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 48), flip), xrep[1]);
            acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 80), flip), xrep[2]);
            acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 112), flip), xrep[3]);
            var s = Avx2.PermuteVar8x32(Avx.LoadVector256((float*)g), perm);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(acc), Avx.Multiply(s, Vector256.Create(dx[b])), f0);
        }
        return f0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> ScalesB8(byte* g, float d)
    {
        var hv = Avx2.Shuffle(Avx2.ConvertToVector256Int64((short*)g).AsInt32(), 0xA0);
        var s = Avx.Multiply(Avx2.And(Avx2.ShiftLeftLogical(hv, 13), Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle(), Vector256.Create(MathF.ScaleB(1f, 112)));
        return Avx.Multiply(s, Vector256.Create(d));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotBq(Vector256<int> acc, byte* g, sbyte* x, Vector256<byte> flip)
    {
        acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 8), flip), Vector256.Create(*(long*)x).AsSByte());
        acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 40), flip), Vector256.Create(*(long*)(x + 8)).AsSByte());
        acc = AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 72), flip), Vector256.Create(*(long*)(x + 16)).AsSByte());
        return AvxVnni.MultiplyWideningAndAdd(acc, Avx2.Xor(Avx.LoadVector256(g + 104), flip), Vector256.Create(*(long*)(x + 24)).AsSByte());
    }

    // F16 headers: the activation qwords broadcast from the natural buffer (the replicated copy of RunB16, 4× the
    // activation bytes in L1, streamed 0.94× as fast from DRAM), the scales [s0 s0 s1 s1 s2 s2 s3 s3] converted by integer ops
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> RunB8(byte* g, sbyte* x, Vector256<int>* cb, float* dx, int nb)
    {
        var flip = Vector256.Create((byte)0x80);
        Vector256<float> f0 = default;
        for (int b = 0; b < nb; b++, g += 136, x += 32)
        {
            Sse.Prefetch0(g + 8192); Sse.Prefetch0(g + 8192 + 64); Sse.Prefetch0(g + 8192 + 128);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotBq(cb[b], g, x, flip)), ScalesB8(g, dx[b]), f0);
        }
        return f0;
    }

    // Session-13 prototype on the runtime's x4 layout (QuantKernels.InterleaveX4): the 4 rows' vpdpbusd lanes summed as
    // integers (vphaddd: lanes 0–3 rows 0–3 over values 0–15 of the block, lanes 4–7 over 16–31, exact, onto
    // c = −128·Σx per lane), then one convert and one FMA by [s0..s3 | s0..s3]·dx per block for the 4 rows, the scales by
    // LoadHalf4C; two blocks per iteration. L2-resident 1.14–1.26× the runtime's kernel, DRAM-bound 1.00–1.04× in this
    // bench but 0.988–0.993× in whole-model 1b decode (docs/quantization.md, session 13).
    internal static void X4C(byte* wk, int k, byte* act, float* y, int c0, int c1)
    {
        int nb = k / 32;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, 1, k);
        for (int j = c0 & ~3; j < c1; j += 4)
        {
            var sum = X4CRun(wk + (long)(j >> 2) * nb * QuantKernels.X4BlockBytes, xq, dx, nb);
            for (int r = Math.Max(j, c0); r < Math.Min(j + 4, c1); r++) y[r] = sum.GetElement(r - j);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static Vector128<float> X4CRun(byte* g, sbyte* xr, float* dx, int nb)
    {
        Vector256<float> a = default, a1 = default;
        int b = 0;
        for (; b + 2 <= nb; b += 2, g += 272, xr += 64)
        {
            Sse.Prefetch0(g + 8192); Sse.Prefetch0(g + 8192 + 64); Sse.Prefetch0(g + 8192 + 128); Sse.Prefetch0(g + 8192 + 192); Sse.Prefetch0(g + 8192 + 256);
            a = X4CBlock(g, xr, dx[b], a);
            a1 = X4CBlock(g + 136, xr + 32, dx[b + 1], a1);
        }
        if (b < nb) a = X4CBlock(g, xr, dx[b], a);
        a = Avx.Add(a, a1);
        return Sse.Add(a.GetLower(), a.GetUpper());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> X4CBlock(byte* g, sbyte* xr, float d, Vector256<float> a)
    {
        var flip = Vector256.Create((byte)0x80);
        var xv = Avx.LoadVector256(xr);
        var c = Avx2.Subtract(Vector256<int>.Zero, AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, flip, xv));
        var p0 = AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(Avx.LoadVector256(g + 8), flip), xv);
        var p1 = AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(Avx.LoadVector256(g + 40), flip), xv);
        var p2 = AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(Avx.LoadVector256(g + 72), flip), xv);
        var p3 = AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(Avx.LoadVector256(g + 104), flip), xv);
        var sum = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p0, p1), Avx2.HorizontalAdd(p2, p3));
        var sc = Sse.Multiply(LoadHalf4C((ushort*)g), Vector128.Create(d));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(sc, sc), a);
    }

    // Four F16 scales as floats, exact (the values of QuantKernels.HalfToSingle) in 4 ops instead of LoadHalf4's 7: each
    // half sign-extended, shifted left 13 and masked to bit 31 and bits 13–27 is the float 2^112 too small (sign and
    // magnitude in place), which the multiply by 2^112 restores (−0 stays −0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> LoadHalf4C(ushort* p)
    {
        var v = Sse2.ShiftLeftLogical(Sse41.ConvertToVector128Int32((short*)p), 13);
        return Sse.Multiply(Sse2.And(v, Vector128.Create(unchecked((int)0x8FFFE000))).AsSingle(), Vector128.Create(MathF.ScaleB(1f, 112)));
    }

    // Two streams per unit: the runtime's block loop on groups i and i + h (h = half the unit's groups) in the same
    // iteration, each prefetched 8 KiB ahead.
    private static void X4D(byte* wk, int k, byte* act, float* y, int c0, int c1)
    {
        int nb = k / 32;
        long gb = (long)nb * QuantKernels.X4BlockBytes;
        sbyte* xq = (sbyte*)act;
        float* dx = QuantKernels.BlockScales(act, 1, k);
        int g0 = c0 >> 2, g1 = (c1 + 3) >> 2, h = (g1 - g0 + 1) / 2;
        for (int g = g0; g < g0 + h; g++)
        {
            int gg = g + h < g1 ? g + h : -1;
            X4DRun(wk + g * gb, gg >= 0 ? wk + gg * gb : wk + g * gb, xq, dx, nb, out var s0, out var s1);
            for (int r = Math.Max(4 * g, c0); r < Math.Min(4 * g + 4, c1); r++) y[r] = s0.GetElement(r - 4 * g);
            if (gg >= 0) for (int r = Math.Max(4 * gg, c0); r < Math.Min(4 * gg + 4, c1); r++) y[r] = s1.GetElement(r - 4 * gg);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    private static void X4DRun(byte* g, byte* q, sbyte* xr, float* dx, int nb, out Vector128<float> s0, out Vector128<float> s1)
    {
        var flip = Vector256.Create((byte)0x80);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (int b = 0; b < nb; b++, g += 136, q += 136, xr += 32)
        {
            Sse.Prefetch0(g + 8192); Sse.Prefetch0(g + 8192 + 64); Sse.Prefetch0(g + 8192 + 128);
            Sse.Prefetch0(q + 8192); Sse.Prefetch0(q + 8192 + 64); Sse.Prefetch0(q + 8192 + 128);
            var xv = Avx.LoadVector256(xr);
            var c = Avx2.Subtract(Vector256<int>.Zero, AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, flip, xv));
            var sc = Sse.Multiply(QuantKernels.LoadHalf4((ushort*)g), Vector128.Create(dx[b]));
            var sq = Sse.Multiply(QuantKernels.LoadHalf4((ushort*)q), Vector128.Create(dx[b]));
            a0 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(g + 8), xv, flip), Avx2.BroadcastScalarToVector256(sc), a0);
            a1 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(g + 40), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0x55)), a1);
            a2 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(g + 72), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xAA)), a2);
            a3 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(g + 104), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sc, sc, 0xFF)), a3);
            b0 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(q + 8), xv, flip), Avx2.BroadcastScalarToVector256(sq), b0);
            b1 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(q + 40), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sq, sq, 0x55)), b1);
            b2 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(q + 72), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sq, sq, 0xAA)), b2);
            b3 = Fma.MultiplyAdd(DotD(c, Avx.LoadVector256(q + 104), xv, flip), Avx2.BroadcastScalarToVector256(Sse.Shuffle(sq, sq, 0xFF)), b3);
        }
        var h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        s0 = Sse.Add(h.GetLower(), h.GetUpper());
        var hq = Avx.HorizontalAdd(Avx.HorizontalAdd(b0, b1), Avx.HorizontalAdd(b2, b3));
        s1 = Sse.Add(hq.GetLower(), hq.GetUpper());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> DotD(Vector256<int> c, Vector256<byte> w, Vector256<sbyte> xv, Vector256<byte> flip) =>
        Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(c, Avx2.Xor(w, flip), xv));
}
