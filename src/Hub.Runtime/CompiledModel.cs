// The compiler: binds a graph to its mapped weights, validates every node once (attributes, ranks, dtypes) by a
// probe shape inference, and plans intermediate memory by liveness: values whose lifetimes do not overlap share one
// grow-only buffer ("slot"), best-fit by the size each value has at one token, so decode steps reuse the same
// buffers and prefill grows them once.
using System.Runtime.InteropServices;
using Hub.IR;
using Hub.Runtime.Execution;
using Hub.Runtime.Kernels;
using Hub.Runtime.Threading;

namespace Hub.Runtime;

/// <summary>A graph compiled for the CPU: execution plan, memory plan and thread pool. Create requests from it.</summary>
public sealed unsafe class CompiledModel : IDisposable
{
    internal enum ValueKind { Input, Weight, Node }

    internal sealed record ValueDef(int Id, string Name, ValueKind Kind, int InputIndex, WeightInfo? Weight);

    internal sealed record StateDef(string Name, int Batch, int KvHeads, int Capacity, int HeadDim)
    {
        public long RowFloats => (long)KvHeads * Capacity * HeadDim;
    }

    private readonly Dictionary<string, int> _valueIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _stateIds = new(StringComparer.Ordinal);
    private bool _disposed;
    // Weight value id → packed panels (see RuntimeOptions.PackWeightsMaxBytes); freed on Dispose.
    private readonly Dictionary<int, nint> _packed = new();
    // Weight value id → its interleaved Q8_0 or Q4_0 copy (see InterleaveWeights), inside _x4Region; written at compile only.
    private readonly Dictionary<int, nint> _x4 = new();
    private HugePageMemory _x4Region; // holds every interleaved copy (one allocation per model)
    private MappedFile? _x4Cache;     // or the weight cache file that holds them (see WeightCacheFile), mapped instead
    // The cache file to write once the compile has succeeded (a repack whose plan had no valid cache file).
    private (string Folder, byte[] Key, WeightCacheFile.Entry[] Plan, long Total, bool OwnsFolder)? _cacheToWrite;

    /// <summary>The IR this model runs (its weights stay memory-mapped; keep it alive while the model is used).</summary>
    public IrModel Model { get; }

    /// <summary>The options the model was compiled with.</summary>
    public RuntimeOptions Options { get; }

    internal ValueDef[] Values { get; }
    internal StateDef[] States { get; }
    internal int[] InputIds { get; }
    internal int[] OutputIds { get; }
    internal int[] NodeValueIds { get; }
    internal int[] SlotOf { get; private set; } = Array.Empty<int>();
    internal int SlotCount { get; private set; }
    internal WorkerPool Pool { get; }
    internal object InferLock { get; } = new();
    internal string GraphFile { get; }
    internal IReadOnlyList<string> SymbolNames { get; }
    /// <summary>Per graph input, per dim: symbol index or -1 for a fixed dim.</summary>
    internal int[][] InputSymbols { get; }

    private CompiledModel(IrModel model, RuntimeOptions options)
    {
        Model = model; Options = options;
        GraphFile = Path.Combine(model.Directory, IrFormat.JsonFile);
        var g = model.Graph;
        var values = new List<ValueDef>();
        void Add(string name, ValueKind kind, int input, WeightInfo? w)
        {
            if (_valueIds.ContainsKey(name)) throw new IrFormatException(GraphFile, $"value '{name}' is defined twice");
            _valueIds[name] = values.Count;
            values.Add(new ValueDef(values.Count, name, kind, input, w));
        }
        for (int i = 0; i < g.Inputs.Count; i++) Add(g.Inputs[i].Name, ValueKind.Input, i, null);
        foreach (var w in g.Weights) Add(w.Name, ValueKind.Weight, -1, w);
        var nodeValues = new List<int>();
        foreach (var n in g.Nodes)
            foreach (var o in n.Outputs) { nodeValues.Add(values.Count); Add(o, ValueKind.Node, -1, null); }
        Values = values.ToArray();
        NodeValueIds = nodeValues.ToArray();
        InputIds = g.Inputs.Select(i => _valueIds[i.Name]).ToArray();
        OutputIds = g.Outputs.Select(o => _valueIds.TryGetValue(o.Name, out var id) ? id : throw new IrFormatException(GraphFile, $"output '{o.Name}' is never produced")).ToArray();

        var symbols = new List<string>();
        InputSymbols = g.Inputs.Select(i => i.Shape.Select(d =>
        {
            if (!d.IsSymbolic) return -1;
            int ix = symbols.IndexOf(d.Symbol!);
            if (ix < 0) { ix = symbols.Count; symbols.Add(d.Symbol!); }
            return ix;
        }).ToArray()).ToArray();
        SymbolNames = symbols;
        foreach (var i in g.Inputs)
            if (i.DType is not (DType.I32 or DType.F32))
                throw new IrFormatException(GraphFile, $"input '{i.Name}' has dtype {i.DType}; the runtime takes I32 or F32 inputs");

        var states = new List<StateDef>();
        foreach (var s in g.States)
        {
            if (s.DType != DType.F32 || s.Shape.Count != 4 || s.Shape[1].IsSymbolic || s.Shape[3].IsSymbolic)
                throw new IrFormatException(GraphFile, $"state '{s.Name}' must be F32 [batch, kv_heads, ctx, head_dim] with fixed kv_heads and head_dim, got {s.DType} [{string.Join(", ", s.Shape)}]");
            int batch = s.Shape[0].IsSymbolic ? options.MaxBatch : checked((int)s.Shape[0].Value);
            int cap = s.Shape[2].IsSymbolic ? options.MaxContext : checked((int)s.Shape[2].Value);
            _stateIds[s.Name] = states.Count;
            states.Add(new StateDef(s.Name, batch, checked((int)s.Shape[1].Value), cap, checked((int)s.Shape[3].Value)));
        }
        States = states.ToArray();
        KvCachePrecision = options.KvCachePrecision != KvCachePrecision.Auto ? options.KvCachePrecision
            : HasCompressedLinearWeights() ? KvCachePrecision.F16 : KvCachePrecision.F32;
        Pool = new WorkerPool(options.EffectiveThreads);
        PacksWeights = options.PackWeightsMaxBytes > 0 && PackedBytesNeeded() <= options.PackWeightsMaxBytes;
        var uses = GraphUses.Of(Model.Graph);
        FindGeluEpilogues(uses);
        FindQkvSplits(uses);
    }

    // Who reads and who produces each value, for the fusion passes below.
    private sealed record GraphUses(List<Node> Nodes, Dictionary<string, int> Readers, HashSet<string> Outputs, Dictionary<string, Node> Producer)
    {
        public static GraphUses Of(Graph g)
        {
            var readers = new Dictionary<string, int>(StringComparer.Ordinal);
            var producer = new Dictionary<string, Node>(StringComparer.Ordinal);
            foreach (var n in g.Nodes)
            {
                foreach (var i in n.Inputs) if (i.Length > 0) readers[i] = readers.GetValueOrDefault(i) + 1;
                foreach (var o in n.Outputs) producer[o] = n;
            }
            return new GraphUses(g.Nodes, readers, g.Outputs.Select(o => o.Name).ToHashSet(StringComparer.Ordinal), producer);
        }
    }

    // Fusions found at compile time: the node that takes over → what it takes over with, and the nodes it absorbs.
    private sealed class Fusions<T> where T : class
    {
        private readonly Dictionary<Node, T> _of = new(ReferenceEqualityComparer.Instance);
        private readonly HashSet<Node> _absorbed = new(ReferenceEqualityComparer.Instance);

        public T? Of(Node n) => _of.TryGetValue(n, out var v) ? v : null;
        public bool Absorbs(Node n) => _absorbed.Contains(n);
        public void Add(Node n, T with, Node absorbed) { _of[n] = with; _absorbed.Add(absorbed); }
    }

    // Attention node → the fused q/k/v projection it reads in place of its Split's outputs; the elided Splits.
    private readonly Fusions<string> _qkv = new();

    /// <summary>
    /// The fused projection (the input of an elided 3-way Split) a bidirectional, cache-less Attention reads its q, k
    /// and v from as column slices, or null. The Split's outputs are only filled when the kernel needs them contiguous.
    /// </summary>
    internal string? QkvSourceOf(Node attention) => _qkv.Of(attention);

    /// <summary>Whether <paramref name="split"/> is left to its Attention reader (see <see cref="QkvSourceOf"/>).</summary>
    internal bool IsElidedSplit(Node split) => _qkv.Absorbs(split);

    // Split(x) → q, k, v read only by one bidirectional Attention without a KV cache (an encoder's fused projection).
    private void FindQkvSplits(GraphUses uses)
    {
        var (nodes, readers, outputs, producer) = uses;
        foreach (var a in nodes)
        {
            if (a.Op != Ops.Attention || a.Inputs.Count < 3 || a.GetBool("causal", true) || a.Has("state_k") || a.GetBool("prefix_bidirectional", false)) continue;
            if (!producer.TryGetValue(a.Inputs[0], out var sp) || sp.Op != Ops.Split || sp.Outputs.Count != 3 || sp.Inputs.Count != 1) continue;
            bool ok = true;
            for (int i = 0; i < 3; i++)
                ok &= a.Inputs[i] == sp.Outputs[i] && readers.GetValueOrDefault(sp.Outputs[i]) == 1 && !outputs.Contains(sp.Outputs[i]);
            if (!ok || _qkv.Absorbs(sp)) continue;
            _qkv.Add(a, sp.Inputs[0], sp);
        }
    }

    // Linear node → the Gelu node applied in its epilogue, and the Gelu nodes that then run as no-ops.
    private readonly Fusions<Node> _gelu = new();

    /// <summary>
    /// The Gelu node whose activation the float Linear <paramref name="linear"/> applies to its output block while it
    /// is still in cache (the Gelu then runs in place as a no-op), or null.
    /// </summary>
    internal Node? GeluEpilogueOf(Node linear) => _gelu.Of(linear);

    /// <summary>Whether <paramref name="gelu"/> was folded into its producing Linear (its output shares that buffer).</summary>
    internal bool IsFusedGelu(Node gelu) => _gelu.Absorbs(gelu);

    // A float (unquantized) Linear whose only reader is a Gelu, neither value a graph output: the pair runs as one op.
    private void FindGeluEpilogues(GraphUses uses)
    {
        var (nodes, readers, outputs, producer) = uses;
        var byName = Model.Graph.Weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
        foreach (var g in nodes)
        {
            if (g.Op != Ops.Gelu || g.Inputs.Count != 1 || g.Outputs.Count != 1 || outputs.Contains(g.Outputs[0])) continue;
            string y = g.Inputs[0];
            if (readers.GetValueOrDefault(y) != 1 || outputs.Contains(y) || !producer.TryGetValue(y, out var lin)) continue;
            if (lin.Op != Ops.Linear || lin.Outputs.Count != 1 || lin.Inputs.Count < 2) continue;
            if (!byName.TryGetValue(lin.Inputs[1], out var w) || w.Quant is not null || w.DType is not (DType.F32 or DType.F16 or DType.BF16)) continue;
            if (g.GetString("approximate", "none") is not ("none" or "tanh")) continue;
            _gelu.Add(lin, g, g);
        }
    }

    /// <summary>
    /// The element type the KV-cache states of this model's requests hold: <see cref="RuntimeOptions.KvCachePrecision"/>
    /// with Auto resolved (F16 when a Linear weight is F16, BF16 or quantized, else F32).
    /// </summary>
    public KvCachePrecision KvCachePrecision { get; }

    /// <summary>Bytes per cached key/value element (2 for an f16 cache, 4 for f32).</summary>
    internal int StateElementBytes => KvCachePrecision == KvCachePrecision.F16 ? 2 : 4;

    // Whether any Linear reads a compressed weight (F16/BF16 storage or an int8/int4 quantization).
    private bool HasCompressedLinearWeights()
    {
        var byName = Model.Graph.Weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
        foreach (var n in Model.Graph.Nodes)
            if (n.Op == Ops.Linear && n.Inputs.Count >= 2 && byName.TryGetValue(n.Inputs[1], out var w)
                && (w.Quant is not null || w.DType is DType.F16 or DType.BF16))
                return true;
        return false;
    }

    /// <summary>Whether float Linear weights get a packed copy (their total fits <see cref="RuntimeOptions.PackWeightsMaxBytes"/>).</summary>
    internal bool PacksWeights { get; }

    // Bytes the packed copies of every float (F32/F16/BF16, unquantized, 2-D) Linear weight would take.
    private long PackedBytesNeeded()
    {
        long total = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var byName = Model.Graph.Weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
        foreach (var n in Model.Graph.Nodes)
        {
            if (n.Op != Ops.Linear || n.Inputs.Count < 2 || !seen.Add(n.Inputs[1])) continue;
            if (!byName.TryGetValue(n.Inputs[1], out var w) || w.Quant is not null || w.Shape.Count != 2) continue;
            if (w.DType is not (DType.F32 or DType.F16 or DType.BF16)) continue;
            total += Gemm.PackedFloats(checked((int)w.Shape[0]), checked((int)w.Shape[1])) * 4;
        }
        return total;
    }

    /// <summary>
    /// The packed copy of Linear weight <paramref name="id"/> ([n, k] at <paramref name="w"/>), made on first use;
    /// null when this model does not pack. Shared by every request of the model.
    /// </summary>
    internal float* PackedWeight(int id, byte* w, DType wt, int n, int k)
    {
        if (!PacksWeights) return null;
        lock (_packed)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_packed.TryGetValue(id, out var p)) return (float*)p;
            long floats = Gemm.PackedFloats(n, k);
            var dst = (float*)NativeMemory.AlignedAlloc((nuint)(floats * 4), 64);
            var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(Gemm.ScratchFloats(k) * 4L), 64);
            try { Gemm.PackWeights(w, wt, n, k, dst, scratch); }
            catch { NativeMemory.AlignedFree(dst); throw; }
            finally { NativeMemory.AlignedFree(scratch); }
            _packed[id] = (nint)dst;
            return dst;
        }
    }

    /// <summary>
    /// Whether compiling repacks Q8_0 Linear weights into the 4-row interleaved layout (see
    /// <see cref="InterleaveWeights"/>). HUB_INT8_REPACK=0 turns it off (before/after figures of `hub bench`);
    /// settable per thread for tests and in-process A/B benchmarks (read by Compile on the calling thread).
    /// </summary>
    internal static bool RepackInt8
    {
        get => _repackOverride ?? RepackFromEnvironment;
        set => _repackOverride = value;
    }

    private static readonly bool RepackFromEnvironment = Environment.GetEnvironmentVariable("HUB_INT8_REPACK") != "0";

    [ThreadStatic] private static bool? _repackOverride;

    /// <summary>
    /// Whether compiling repacks Q4_0 Linear weights into the 4-row interleaved int4 layout (session 12, see
    /// <see cref="InterleaveWeights"/>): a switch of its own, HUB_INT4_REPACK=0, beside HUB_INT8_REPACK; settable per
    /// thread for tests and in-process A/B benchmarks (read by Compile on the calling thread).
    /// </summary>
    internal static bool RepackInt4
    {
        get => _repack4Override ?? Repack4FromEnvironment;
        set => _repack4Override = value;
    }

    private static readonly bool Repack4FromEnvironment = Environment.GetEnvironmentVariable("HUB_INT4_REPACK") != "0";

    [ThreadStatic] private static bool? _repack4Override;

    // Scales tensors (by value id) whose F16 values a QuantLinearExec bind has found finite: checked once per model, not
    // once per request (the check reads every scale, which on a cold page cache faults in about half of a Q8_0 file).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, bool> _scalesChecked = new();

    /// <summary>Whether a bind already found every scale of scales value <paramref name="id"/> finite.</summary>
    internal bool ScalesChecked(int id) => _scalesChecked.ContainsKey(id);

    /// <summary>Records that every scale of scales value <paramref name="id"/> is finite (after the check passed).</summary>
    internal void MarkScalesChecked(int id) => _scalesChecked.TryAdd(id, true);

    /// <summary>The interleaved copy of weight <paramref name="id"/> made at compile, or null (its original is in use).</summary>
    internal byte* InterleavedWeight(int id) => _x4.TryGetValue(id, out var p) ? (byte*)p : null;

    /// <summary>Bytes of the interleaved weight copies this model holds.</summary>
    internal long InterleavedBytes { get; private set; }

    /// <summary>Whether the interleaved copies are the mapped weight cache file (no repack ran at this compile).</summary>
    internal bool InterleavedFromCache => _x4Cache != null;

    /// <summary>Whether compiling wrote the weight cache file of this model's plan (tests).</summary>
    internal bool WroteWeightCache { get; private set; }

    /// <summary>HUB_WEIGHT_CACHE=0 turns the weight cache off (see <see cref="RuntimeOptions.WeightCache"/>).</summary>
    internal static readonly bool WeightCacheFromEnvironment = Environment.GetEnvironmentVariable("HUB_WEIGHT_CACHE") != "0";

    // Load-time repack (llama.cpp / OpenVINO "CPU repack"; the IR on disk is unchanged): on a CPU with AVX-VNNI every
    // Linear weight that is symmetric int8 with groups of 32 and N a multiple of 4 (Q8_0; F16 scales, or f16-exact F32
    // ones), read by Linear nodes alone (as their weight: a tied embedding table is also read by Embedding) and whose
    // scales no node reads, is copied once into the 4-row interleaved layout that QuantKernels' x4 GEMV streams (docs/quantization.md,
    // "Session 11: x4 repack"); every QuantLinearExec of the model then reads the copy, never the original. Tensor by
    // tensor on the pool, then the original's whole pages in the read-only file mapping are released (MADV_DONTNEED:
    // only an unmap there, the page cache keeps the bytes), so the resident set stays ≈ the weights plus one tensor.
    // Session 12: Q4_0 (int4, symmetric, groups of 32, K a multiple of 256, N of 4) the same way on any AVX2+FMA CPU,
    // into QuantGemvInt4's interleaved layout ("Session 12: Q4_0 interleaving").
    // Session 13: the region is saved beside the IR (WeightCacheFile, RuntimeOptions.WeightCache) and later compiles of the
    // same plan map that file instead: neither the originals nor their scales are read at all then.
    private void InterleaveWeights()
    {
        bool int8 = RepackInt8 && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported;
        bool int4 = RepackInt4 && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        if (!(int8 || int4)) return;
        var g = Model.Graph;
        var byName = g.Weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
        // every reader of a weight must be a Linear taking it as its weight; scales must have no reader at all
        var ok = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var n in g.Nodes)
            for (int i = 0; i < n.Inputs.Count; i++)
            {
                string name = n.Inputs[i];
                if (name.Length == 0 || !byName.ContainsKey(name)) continue;
                bool linear = n.Op == Ops.Linear && i == 1;
                ok[name] = linear && ok.GetValueOrDefault(name, true);
            }
        var scalesRead = g.Nodes.SelectMany(n => n.Inputs).ToHashSet(StringComparer.Ordinal);
        var plan = new List<(WeightInfo W, string Scales, long ScaleBytes, QuantMatrix Q, long Offset)>();
        long total = 0;
        foreach (var w in g.Weights)
        {
            if (!ok.GetValueOrDefault(w.Name) || w.Quant is not { } q || !q.Symmetric || q.GroupSize != QuantKernels.Block) continue;
            bool q4 = q.Scheme == "int4";
            if (q4 ? !int4 || w.DType != DType.U8 : q.Scheme != "int8" || !int8 || w.DType != DType.I8) continue;
            if (w.Shape.Rank != 2 || scalesRead.Contains(q.Scales) || !byName.TryGetValue(q.Scales, out var si) || si.DType is not (DType.F16 or DType.F32)) continue;
            long nl = w.Shape[0], kl = w.Shape[1] * (q4 ? 2 : 1);
            int kMul = q4 ? QuantGemvInt4.X4UnitBlocks * QuantKernels.Block : QuantKernels.Block;
            if (nl <= 0 || nl % 4 != 0 || kl <= 0 || kl % kMul != 0 || nl > int.MaxValue || kl > int.MaxValue) continue;
            int n = (int)nl, k = (int)kl;
            // a malformed entry keeps its original: the executor's bind reports it
            bool half = si.DType == DType.F16;
            if (w.Length != nl * kl / (q4 ? 2 : 1) || si.Length != nl * (kl / QuantKernels.Block) * (half ? 2 : 4)) continue;
            var data = Model.GetWeight(w.Name); var scales = Model.GetWeight(q.Scales);
            // F32 scales (IRs exported before session 4) are f16-exact by construction; one that is not keeps the original
            var qm = half ? new QuantMatrix((byte*)data.Pointer, (ushort*)scales.Pointer, null, n, k, QuantKernels.Block, q4, true)
                          : new QuantMatrix((byte*)data.Pointer, (float*)scales.Pointer, null, n, k, QuantKernels.Block, q4, true);
            if (!half && !QuantKernels.ScalesAreHalves(qm)) continue;
            plan.Add((w, q.Scales, si.Length, qm, total));
            total += (CopyBytes(qm) + 63) & ~63L;
        }
        if (total == 0) return;
        string? folder = Options.WeightCache && WeightCacheFromEnvironment && !string.IsNullOrEmpty(Model.Sha256)
            ? Options.WeightCacheDirectory ?? Path.Combine(Model.Directory, IrFormat.CacheFolder) : null;
        if (folder != null)
        {
            var entries = plan.Select(p => new WeightCacheFile.Entry(p.W.Name, p.Q.Int4, p.Q.N, p.Q.K, byName[p.Scales].DType,
                p.W.Offset, byName[p.Scales].Offset, p.Offset, CopyBytes(p.Q))).ToArray();
            var key = WeightCacheFile.Key(Model.Sha256, entries, total);
            if (WeightCacheFile.TryMap(folder, key, entries, total) is { } file)
            {
                // the file exists only for a plan whose repack succeeded, which checked every scale of these weights
                _x4Cache = file;
                byte* data = file.Pointer + WeightCacheFile.HeaderBytes(entries.Length);
                MapNeighboursOfOriginals(plan.Select(p => (p.W, byName[p.Scales])));
                foreach (var (w, scalesName, scaleBytes, qm, offset) in plan)
                {
                    _x4[_valueIds[w.Name]] = (nint)(data + offset);
                    InterleavedBytes += CopyBytes(qm);
                    MarkScalesChecked(_valueIds[scalesName]);
                    MappedFile.DropPages(MappedFile.WholePages(qm.Data, w.Length));
                    MappedFile.DropPages(MappedFile.WholePages(ScalePointer(qm), scaleBytes));
                }
                return;
            }
            _cacheToWrite = (folder, key, entries, total, Options.WeightCacheDirectory is null);
        }
        // One region for every copy, on huge pages where the OS offers them: filling 4 KiB pages of fresh memory cost
        // one fault each, most of the repack's time (1b Q8_0: 0.5 s of 1.1 GB at 2–4 GB/s).
        _x4Region = HugePageMemory.Allocate(total);
        MapNeighboursOfOriginals(plan.Select(p => (p.W, byName[p.Scales])));
        int units = Pool.Size == 1 ? 1 : Pool.Size * 4;
        for (int i = 0; i < plan.Count; i++)
        {
            var (w, scalesName, scaleBytes, qm, offset) = plan[i];
            byte* dst = _x4Region.Pointer + offset;
            _x4[_valueIds[w.Name]] = (nint)dst;
            InterleavedBytes += CopyBytes(qm);
            try { Pool.Run(new Interleaver(qm, dst, units), units); }
            catch (InvalidOperationException e) { throw new IrFormatException(GraphFile, $"weight '{w.Name}' (scales '{scalesName}'): {e.Message}", e); }
            // whole pages only: a page shared with a neighbouring tensor stays mapped
            MappedFile.DropPages(MappedFile.WholePages(qm.Data, w.Length));
            MappedFile.DropPages(MappedFile.WholePages(ScalePointer(qm), scaleBytes));
        }

        static byte* ScalePointer(in QuantMatrix m) => m.ScalesF16 != null ? (byte*)m.ScalesF16 : (byte*)m.Scales;
        static long CopyBytes(in QuantMatrix m) => m.Int4 ? QuantGemvInt4.X4Bytes(m.N, m.K) : QuantKernels.X4Bytes(m.N, m.K);
    }

    // The originals of the copies are never read again, but the page cache may hold the bin in 2 MiB folios (the IR
    // writer and the mapping's MADV_HUGEPAGE ask for them), and touching any byte of a large folio maps all of it: a
    // norm's gains stored between two originals, read every step, would keep up to 2 MiB of them resident (1b Q8_0:
    // ~90 MiB). So the 2 MiB windows the originals touch go on 4 KiB entries (a cold fault then reads a small folio),
    // and every page of another tensor in those windows is mapped now, before the originals' pages are unmapped (the
    // caller's DropPages): a later read of that tensor then finds its page mapped and maps nothing more.
    private void MapNeighboursOfOriginals(IEnumerable<(WeightInfo Data, WeightInfo Scales)> originals)
    {
        if (!OperatingSystem.IsLinux()) return;
        const long Window = 2L << 20, Page = 4096;
        byte* bin = Model.BinPointer;
        long length = Model.BinLength;
        var ranges = originals.SelectMany(o => new[] { (o.Data.Offset, o.Data.Offset + o.Data.Length), (o.Scales.Offset, o.Scales.Offset + o.Scales.Length) })
            .Where(r => r.Item2 > r.Item1).OrderBy(r => r.Item1).ToList();
        if (ranges.Count == 0 || bin == null) return;
        // merged, so that a page is "inside an original" when one merged range covers it
        var merged = new List<(long Start, long End)>();
        foreach (var (a, b) in ranges)
            if (merged.Count > 0 && a <= merged[^1].End) merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, b));
            else merged.Add((a, b));
        long lastWindow = -1, sink = 0;
        int next = 0;   // first merged range that may cover the page being looked at
        foreach (var (start, end) in merged)
        {
            // Only where the bin's mapping is 2 MiB aligned (as Linux places a large file mapping; elsewhere no 2 MiB
            // entry can map it anyway), and cut at its end: the advice must not reach a neighbouring mapping.
            if ((nint)bin % Window == 0)
                MappedFile.AdviseSmallPages(bin + start, end - start, edges: true, limit: bin + ((length + Page - 1) & ~(Page - 1)));
            for (long w = Math.Max(start / Window, lastWindow + 1); w <= (end - 1) / Window; w++)
            {
                lastWindow = w;
                for (long p = w * Window; p < Math.Min((w + 1) * Window, length); p += Page)
                {
                    while (next < merged.Count && merged[next].End <= p) next++;
                    bool inside = next < merged.Count && merged[next].Start <= p && merged[next].End >= Math.Min(p + Page, length);
                    if (!inside) sink += Volatile.Read(ref bin[p]);
                }
            }
        }
        GC.KeepAlive(sink);
    }

    // One tensor's 4-row groups split into `units` contiguous ranges.
    private sealed class Interleaver(QuantMatrix w, byte* dst, int units) : ParallelWork
    {
        public override void Execute(int index, int worker)
        {
            int groups = w.N / 4;
            int g0 = (int)((long)groups * index / units), g1 = (int)((long)groups * (index + 1) / units);
            if (w.Int4) QuantGemvInt4.InterleaveX4(w, dst, g0, g1);
            else QuantKernels.InterleaveX4(w, dst, g0, g1);
        }
    }

    /// <summary>
    /// Compiles <paramref name="model"/>: checks every op is supported and its attributes and shapes are consistent,
    /// then plans memory once. Throws <see cref="IrFormatException"/> for an inconsistent graph and
    /// <see cref="UnsupportedModelException"/> for an op or weight format this runtime does not run.
    /// </summary>
    public static CompiledModel Compile(IrModel model, RuntimeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new RuntimeOptions();
        if (options.MaxContext <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"MaxContext {options.MaxContext} must be positive");
        if (options.MaxBatch <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"MaxBatch {options.MaxBatch} must be positive");
        if (options.Threads < 0) throw new ArgumentOutOfRangeException(nameof(options), $"Threads {options.Threads} must be ≥ 0");
        if (!Enum.IsDefined(options.KvCachePrecision))
            throw new ArgumentOutOfRangeException(nameof(options), $"KvCachePrecision {(int)options.KvCachePrecision} is not one of {string.Join(", ", Enum.GetNames<KvCachePrecision>())}");
        var cm = new CompiledModel(model, options);
        try
        {
            cm.InterleaveWeights();
            var estimate = new long[cm.Values.Length];
            using (var probe = new InferRequest(cm, probe: true)) probe.Probe(estimate);
            cm.PlanSlots(estimate);
            cm.WriteWeightCache();
            return cm;
        }
        catch
        {
            cm.Dispose();
            throw;
        }
    }

    // After a compile that repacked: saves the region for later compiles (best-effort; a failure only costs them the repack).
    private void WriteWeightCache()
    {
        if (_cacheToWrite is not { } c) return;
        _cacheToWrite = null;
        WroteWeightCache = WeightCacheFile.TryWrite(c.Folder, c.Key, c.Plan, _x4Region.Pointer, c.Total, c.OwnsFolder);
    }

    /// <summary>Creates a request with its own KV cache (MaxBatch × MaxContext) and intermediate buffers.</summary>
    public InferRequest CreateInferRequest()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new InferRequest(this, probe: false);
    }

    internal bool IsDisposed => Volatile.Read(ref _disposed);

    internal int ValueId(string name) =>
        _valueIds.TryGetValue(name, out var id) ? id : throw new IrFormatException(GraphFile, $"value '{name}' is used but not defined by an input, weight, state or node; the IR is malformed, re-export the model");

    internal int StateId(string name) =>
        _stateIds.TryGetValue(name, out var id) ? id : throw new IrFormatException(GraphFile, $"state '{name}' is used but not declared; the IR is malformed, re-export the model");

    internal bool IsWeight(int id) => Values[id].Kind == ValueKind.Weight;

    internal WeightInfo WeightInfoOf(int id) => Values[id].Weight ?? throw new InvalidOperationException($"'{Values[id].Name}' is not a weight");

    // Liveness: a value's buffer is free after the last node that reads it; graph outputs live to the end.
    private void PlanSlots(long[] estimate)
    {
        var nodes = Model.Graph.Nodes;
        var lastUse = new int[Values.Length];
        Array.Fill(lastUse, -1);
        for (int i = 0; i < nodes.Count; i++)
        {
            foreach (var o in nodes[i].Outputs) lastUse[_valueIds[o]] = i;
            foreach (var inp in nodes[i].Inputs) if (inp.Length > 0) lastUse[_valueIds[inp]] = i;
        }
        // An Attention that reads its fused projection in place keeps that buffer alive until it has run.
        var extraRead = new int[nodes.Count];
        Array.Fill(extraRead, -1);
        for (int i = 0; i < nodes.Count; i++)
            if (QkvSourceOf(nodes[i]) is { } src)
            {
                extraRead[i] = _valueIds[src];
                lastUse[extraRead[i]] = Math.Max(lastUse[extraRead[i]], i);
            }
        foreach (var o in OutputIds) lastUse[o] = int.MaxValue;
        var slotOf = new int[Values.Length];
        Array.Fill(slotOf, -1);
        var slotSize = new List<long>();
        var free = new List<int>();
        for (int i = 0; i < nodes.Count; i++)
        {
            int inPlaceFrom = -1;
            if (IsFusedGelu(nodes[i]))
            {
                // The Linear already wrote the activated values: the Gelu's output is its input's buffer.
                int src = _valueIds[nodes[i].Inputs[0]], dst = _valueIds[nodes[i].Outputs[0]];
                slotOf[dst] = slotOf[src];
                slotSize[slotOf[src]] = Math.Max(slotSize[slotOf[src]], Math.Max(1, estimate[dst]));
                inPlaceFrom = src;
            }
            foreach (var o in nodes[i].Outputs)
            {
                int id = _valueIds[o];
                if (slotOf[id] >= 0) continue;
                long need = Math.Max(1, estimate[id]);
                int best = -1;
                foreach (var s in free)
                {
                    if (best < 0) { best = s; continue; }
                    bool fits = slotSize[s] >= need, bestFits = slotSize[best] >= need;
                    if (fits && (!bestFits || slotSize[s] < slotSize[best])) best = s;
                    else if (!fits && !bestFits && slotSize[s] > slotSize[best]) best = s;
                }
                if (best < 0) { best = slotSize.Count; slotSize.Add(0); }
                else free.Remove(best);
                slotSize[best] = Math.Max(slotSize[best], need);
                slotOf[id] = best;
            }
            var seen = new HashSet<int>();
            if (extraRead[i] >= 0 && slotOf[extraRead[i]] >= 0 && lastUse[extraRead[i]] == i && seen.Add(extraRead[i])) free.Add(slotOf[extraRead[i]]);
            foreach (var name in nodes[i].Inputs.Concat(nodes[i].Outputs))
            {
                if (name.Length == 0) continue;
                int id = _valueIds[name];
                if (id == inPlaceFrom) continue; // its buffer lives on as the Gelu's output
                if (slotOf[id] >= 0 && lastUse[id] == i && seen.Add(id)) free.Add(slotOf[id]);
            }
        }
        SlotOf = slotOf;
        SlotCount = slotSize.Count;
    }

    /// <summary>
    /// Stops the thread pool and frees the packed float weights and the region of interleaved Q8_0/Q4_0 copies (or unmaps
    /// the weight cache file that held them). Safe against requests running on other threads: it waits
    /// for an <see cref="InferRequest.Infer"/> in progress to finish, and every later Infer on this model's requests
    /// throws <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        lock (InferLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        Pool.Dispose();
        lock (_packed)
        {
            foreach (var p in _packed.Values) NativeMemory.AlignedFree((void*)p);
            _packed.Clear();
            _x4.Clear();
            _x4Region.Free();
            _x4Cache?.Dispose();
            _x4Cache = null;
        }
    }
}
