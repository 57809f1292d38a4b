// Linear with int8/int4 weights (docs/quantization.md). Decode (M ≤ Gemm.GemvMaxRows): the activation rows are
// quantized once per call, then many small units of output rows run the integer GEMV on the persistent pool (each
// weight byte is read once). Shapes the integer path cannot take use the float GEMV over dequantized rows. Prefill:
// each unit dequantizes a panel of weight rows into its worker's scratch once and runs the f32 GEMM block on it over
// all M rows; int4 (K a multiple of 64) instead quantizes the activation rows on the pool and runs the int4 × int8
// GEMM on 16-row units (HUB_QUANT_GEMM=float: the panel path for int4 too): the broadcast-layout GEMM of
// QuantGemmInt4 on panels each unit repacks, every int4 grouping.
// int8 with groups of a multiple of 32 (Q8_0, and the default asymmetric per-channel export) does the same with the
// int8 × int8 GEMM in the broadcast layout (QuantGemmInt8, the default: UseInt8Broadcast; HUB_QUANT_GEMM8=panel for
// dequantized panels).
// Q8_0 weights the compiled model repacked at load (CompiledModel.InterleavedWeight, AVX-VNNI) and Q4_0 ones (session
// 12, AVX2+FMA, K a multiple of 256) are bound with their interleaved copy: the decode GEMV runs the x4 kernel on it
// (QuantKernels.GemvInt8X4 / QuantGemvInt4.GemvX4) and every other path reads it too (units are whole 4-row groups:
// _unitRows is a multiple of 4): the int8 GEMM through RowStart/BlockStride, the int4 GEMM's panel repack through
// Int4Block and the units' scale headers, the float paths (HUB_QUANT_GEMM=float panels, GemvFloat) through
// DequantizeRow. The one exception is the widen-in-registers GEMV (HUB_QUANT_GEMV=float, a test switch): it binds the
// original (mapped in again), which the kernel enforces (it throws on an interleaved matrix).
using System.Runtime.CompilerServices;
using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Execution;

internal sealed unsafe class QuantLinearExec : OpExec
{
    /// <summary>Weight rows dequantized per prefill unit.</summary>
    private const int PanelRows = 64;

    private readonly QuantMatrix _w;
    private readonly int _n, _k;
    private readonly bool _integer, _registers;
    private readonly float[] _xsums;    // pinned: per-group Σx for the float-in-registers GEMV
    private readonly byte[] _act;       // pinned: quantized activation rows for the integer GEMV
    private readonly byte* _actPtr;
    private float* _x, _y, _bias;
    private readonly int _panelRows;
    private readonly bool _int4Gemm;    // int4 prefill through QuantGemmInt4 (repacked panels, broadcast tiles) instead of dequantized panels
    private readonly bool _int8Gemm;    // int8 prefill through QuantGemmInt8 instead of dequantized panels
    private readonly bool _int8Vnni;    // ... on its AVX-VNNI path (QuantGemmInt8.UseVnni when the executor was built)
    private byte* _prefActPtr;          // the integer GEMMs' quantized activations, in the request's shared prefill scratch
    private int _m, _unitRows, _mBlocks, _mRows, _nBlocks, _quantUnits;
    private bool _gemv, _singleUnit, _quantPhase;

    public QuantLinearExec(Node n, InferRequest r) : base(n, r, 2, 3, 1)
    {
        if (!R.Model.IsWeight(In[1])) throw BadGraph($"weight '{n.Inputs[1]}' must be a stored weight");
        _w = Bind(r, In[1], n.Name);
        _n = _w.N; _k = _w.K;
        _int4Gemm = QuantGemmInt4.Fits(_w) && UseInt4Gemm;
        _int8Gemm = QuantGemmInt8.Fits(_w) && UseInt8Broadcast;
        _int8Vnni = _int8Gemm && QuantGemmInt8.UseVnni;
        // int4 GEMM units: 16 weight rows. Dequantized f32 panels: 64 rows (GemmBlock packs its A block once per call when
        // K > 384, so smaller panels repeat that copy; 16-row panels measured 0.91× llama.cpp on Q8_0 prefill vs 1.12×).
        _panelRows = _int4Gemm || _int8Gemm ? QuantKernels.GemmRows : PanelRows;
        _integer = QuantKernels.IntegerPathFits(_w) && !ForceFloatPath;
        if (_integer)
        {
            _act = GC.AllocateArray<byte>(checked((int)QuantKernels.ActivationBytes(Gemm.GemvMaxRows, _k, _w.Groups) + 64), pinned: true);
            fixed (byte* p = _act) _actPtr = (byte*)(((nint)p + 63) & ~(nint)63);
        }
        else _act = Array.Empty<byte>();
        _registers = ForceFloatPath && QuantKernels.IntegerPathFits(_w) && System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        // The model's interleaved Q8_0 / Q4_0 copy (made at compile; the original's pages may be released): every path
        // below reads it — the integer GEMV its x4 kernel, the int8 GEMMs stage rows through RowStart/BlockStride, the
        // int4 GEMM's panels through Int4Block, the float paths dequantize through DequantizeRow — except the
        // widen-in-registers GEMV (HUB_QUANT_GEMV=float, a test switch), which reads the original.
        byte* x4 = R.Model.InterleavedWeight(In[1]);
        if (x4 != null && !_registers) _w = new QuantMatrix(_w, x4);
        _xsums = _registers ? GC.AllocateArray<float>(Gemm.GemvMaxRows * _w.Groups, pinned: true) : Array.Empty<float>();
        if (HasInput(2))
        {
            RequireWeightF32(2);
            if (R.T[In[2]].Count != _n) throw BadGraph($"bias '{n.Inputs[2]}' has {R.T[In[2]].Count} values for {_n} outputs");
        }
    }

    /// <summary>
    /// Test/bench switch (HUB_QUANT_GEMV=float): skip the integer GEMV; shapes that fit it use the float GEMV that widens
    /// bytes in registers instead, the others the dequantize-a-row float GEMV.
    /// </summary>
    internal static bool ForceFloatPath
    {
        get => _forceFloatOverride ?? ForceFloatFromEnvironment;
        set => _forceFloatOverride = value;   // per thread: a test forcing it does not leak into tests on other threads
    }

    private static readonly bool ForceFloatFromEnvironment = Environment.GetEnvironmentVariable("HUB_QUANT_GEMV") == "float";

    [ThreadStatic] private static bool? _forceFloatOverride;

    /// <summary>The bound weight (tests check which layout an executor reads).</summary>
    internal QuantMatrix Weight => _w;

    /// <summary>
    /// Decode GEMV units per pool participant (HUB_QGEMV_UNITS, default 16; at least 32 rows each): more units shorten
    /// the tail where one worker waits for the other's last unit, fewer give each worker longer contiguous ranges.
    /// Settable for A/B benchmarks.
    /// </summary>
    internal static int GemvUnitsPerWorker { get; set; } =
        int.TryParse(Environment.GetEnvironmentVariable("HUB_QGEMV_UNITS"), out var u) && u > 0 ? u : 16;

    /// <summary>
    /// Test/bench switch (HUB_QUANT_GEMM=float): int4 prefill dequantizes panels and runs the f32 GEMM instead of the
    /// int4 × int8 GEMM (the default since its tile correction was vectorized: 1.27–1.33× the panel path with 2
    /// threads on the small/1b shapes, see docs/quantization.md). Settable per thread (read when a request is created
    /// on that thread), so a test forcing it does not leak into tests running on other threads.
    /// </summary>
    internal static bool UseInt4Gemm
    {
        get => _int4GemmOverride ?? Int4GemmFromEnvironment;
        set => _int4GemmOverride = value;
    }

    private static readonly bool Int4GemmFromEnvironment = Environment.GetEnvironmentVariable("HUB_QUANT_GEMM") != "float";

    [ThreadStatic] private static bool? _int4GemmOverride;

    /// <summary>
    /// Test/bench switch: int8 prefill (Q8_0 and the asymmetric per-channel / grouped exports) runs
    /// <see cref="QuantGemmInt8"/> (broadcast layout, weight rows repacked into interleaved nibble planes), the default
    /// since it measured faster than dequantized panels (docs/quantization.md). HUB_QUANT_GEMM8=panel (or
    /// HUB_QUANT_GEMM=float) switches back to the panel path.
    /// </summary>
    internal static bool UseInt8Broadcast
    {
        get => _int8BcastOverride ?? Int8BroadcastFromEnvironment;
        set => _int8BcastOverride = value;   // per thread: a test forcing it does not leak into tests on other threads
    }

    private static readonly bool Int8BroadcastFromEnvironment =
        Environment.GetEnvironmentVariable("HUB_QUANT_GEMM8") != "panel" && Environment.GetEnvironmentVariable("HUB_QUANT_GEMM") != "float";

    [ThreadStatic] private static bool? _int8BcastOverride;

    /// <summary>Binds a quantized weight value (data, scales, zeros) and checks the entries agree with its index.</summary>
    internal static QuantMatrix Bind(InferRequest r, int id, string node)
    {
        var info = r.Model.WeightInfoOf(id);
        var q = info.Quant ?? throw new InvalidOperationException($"node '{node}': weight '{info.Name}' is not quantized");
        bool int4 = q.Scheme switch
        {
            "int8" => false,
            "int4" => true,
            _ => throw new UnsupportedModelException($"node '{node}': weight '{info.Name}' uses quantization scheme '{q.Scheme}'; this runtime runs int8 and int4"),
        };
        if (info.Shape.Rank != 2) throw new InvalidOperationException($"node '{node}': quantized weight '{info.Name}' must be 2-D, got {info.Shape}");
        var expected = int4 || !q.Symmetric ? DType.U8 : DType.I8;
        if (info.DType != expected) throw new InvalidOperationException($"node '{node}': {q.Scheme} {(q.Symmetric ? "symmetric" : "asymmetric")} weight '{info.Name}' is {info.DType}; expected {expected}");
        int n = checked((int)info.Shape[0]), k = checked((int)info.Shape[1]) * (int4 ? 2 : 1);
        int gl = q.GroupSize == 0 ? k : q.GroupSize;
        if (q.GroupSize < 0 || k <= 0 || gl <= 0 || k % gl != 0 || (int4 && (gl % 32 != 0)))
            throw new InvalidOperationException($"node '{node}': group size {q.GroupSize} of '{info.Name}' does not fit K = {k}");
        int groups = k / gl;
        // F16 scales (current exports) or F32 (IRs exported before): both bind in place, the kernels read either.
        long count = (long)n * groups;
        bool half = ScalesDType(r, q.Scales) == DType.F16;
        byte* scales = Tensor(r, q.Scales, half ? DType.F16 : DType.F32, count, info.Name, node);
        // an interleaved copy's scales were checked when it was made (reading the original's would map them in again);
        // the original's once per model, at the compile's probe request
        int scalesId = r.Model.ValueId(q.Scales);
        if (half && r.Model.InterleavedWeight(id) == null && !r.Model.ScalesChecked(scalesId))
        {
            var hs = (ushort*)scales;
            for (long i = 0; i < count; i++)
                if ((hs[i] & 0x7C00) == 0x7C00)
                    throw new InvalidOperationException($"node '{node}': scale {i} of '{q.Scales}' (for '{info.Name}') is not finite; re-export the model");
            r.Model.MarkScalesChecked(scalesId);
        }
        byte* zeros = null;
        if (!q.Symmetric)
        {
            if (q.Zeros is null) throw new InvalidOperationException($"node '{node}': asymmetric weight '{info.Name}' names no zero points");
            zeros = Tensor(r, q.Zeros, DType.U8, (long)n * groups, info.Name, node);
        }
        return half ? new QuantMatrix(r.T[id].B, (ushort*)scales, zeros, n, k, q.GroupSize, int4, q.Symmetric)
                    : new QuantMatrix(r.T[id].B, (float*)scales, zeros, n, k, q.GroupSize, int4, q.Symmetric);
    }

    // The stored type of a scales entry (F32 when it is missing, so that Tensor reports the missing name).
    private static DType ScalesDType(InferRequest r, string name)
    {
        try { return r.Model.IsWeight(r.Model.ValueId(name)) ? r.T[r.Model.ValueId(name)].DType : DType.F32; }
        catch (Exception e) when (e is IrFormatException or InvalidOperationException or KeyNotFoundException) { return DType.F32; }
    }

    private static byte* Tensor(InferRequest r, string name, DType dtype, long count, string owner, string node)
    {
        int id;
        try { id = r.Model.ValueId(name); }
        catch (Exception e) when (e is IrFormatException or InvalidOperationException or KeyNotFoundException)
        { throw new InvalidOperationException($"node '{node}': '{name}' of quantized weight '{owner}' is missing from the weights index", e); }
        if (!r.Model.IsWeight(id)) throw new InvalidOperationException($"node '{node}': '{name}' of '{owner}' is not a stored weight");
        var t = r.T[id];
        if (t.DType != dtype || t.Count != count)
            throw new InvalidOperationException($"node '{node}': '{name}' is {t.DType} {t.ShapeString()}; expected {dtype} with {count} values for '{owner}'");
        return t.B;
    }

    public override long ScratchFloats => Gemm.ScratchFloats(_k) + Math.Max((long)_panelRows * _k, _int8Gemm ? QuantGemmInt8.ScratchFloats(_k) : 0) + 64;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes() => InferLinearShapes(_n, _k);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        _m = checked((int)Prod(x, 0, x.Rank - 1));
        if (_m == 0 || _n == 0) return;
        _x = x.F; _y = Y().F; _bias = HasInput(2) ? X(2).F : null;
        _gemv = _m <= Gemm.GemvMaxRows;
        int workers = R.Model.Pool.Size;
        bool single = workers == 1 || 2.0 * _m * _n * _k < 200_000;
        if (_gemv)
        {
            if (_integer) QuantKernels.QuantizeActivations(_w, _x, _m, _actPtr);
            else if (_registers) fixed (float* xs = _xsums) QuantKernels.GroupSums(_x, _m, _k, _w.GroupLength, xs);
            // Many small units, claimed homed as in LinearExec: each worker streams its own share front to back, and a
            // delayed worker's rest is taken over (it costs proportionally).
            int units = single ? 1 : Math.Min(workers * GemvUnitsPerWorker, (_n + 31) / 32);
            _unitRows = ((_n + units - 1) / units + 3) & ~3;
            units = Math.Max(1, (_n + _unitRows - 1) / _unitRows);
            R.Model.Pool.RunHomed(this, units);
        }
        else
        {
            // Each unit dequantizes its panel once and runs it over all M rows; M is split only when there are too few
            // panels to keep every worker busy (each split dequantizes the panel again).
            _nBlocks = (_n + _panelRows - 1) / _panelRows;
            _mBlocks = single ? 1 : Math.Clamp((workers * 4 + _nBlocks - 1) / _nBlocks, 1, (_m + Gemm.MR * 8 - 1) / (Gemm.MR * 8));
            _mRows = ((_m + _mBlocks - 1) / _mBlocks + 3) & ~3;
            if (_int4Gemm || _int8Gemm)
            {
                _prefActPtr = R.PrefillScratch(_int4Gemm ? QuantGemmInt4.ActivationBytes(_m, _k) : QuantKernels.ActivationBytes(_m, _k, _w.Groups));
                // The workers quantize disjoint row ranges, then run the GEMM units.
                _quantUnits = single ? 1 : Math.Min(workers * 2, (_m + 7) / 8);
                _quantPhase = true;
                try { R.Model.Pool.Run(this, _quantUnits); }
                finally { _quantPhase = false; }
            }
            _singleUnit = single;
            R.Model.Pool.Run(this, single ? 1 : _mBlocks * _nBlocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int worker)
    {
        if (_quantPhase)
        {
            int r0 = (int)((long)_m * index / _quantUnits), r1 = (int)((long)_m * (index + 1) / _quantUnits);
            if (_int4Gemm) QuantGemmInt4.QuantizeActivations(_w, _x, _m, _prefActPtr, r0, r1);
            else QuantKernels.QuantizeActivations(_w, _x, _m, _prefActPtr, r0, r1);
            return;
        }
        float* scratch = R.ScratchFor(worker);
        if (_gemv)
        {
            int c0 = index * _unitRows, c1 = Math.Min(_n, c0 + _unitRows);
            if (c0 >= c1) return;
            if (_integer) QuantKernels.GemvInteger(_w, _m, _actPtr, _bias, _y, _n, c0, c1);
            else if (_registers) fixed (float* xs = _xsums) QuantKernels.GemvFloatRegisters(_w, _x, _m, xs, _bias, _y, _n, c0, c1);
            else QuantKernels.GemvFloat(_w, _x, _m, _bias, _y, _n, c0, c1, scratch);
            return;
        }
        float* panel = scratch + Gemm.ScratchFloats(_k);
        panel = (float*)(((nint)panel + 63) & ~(nint)63);
        int first = index, last = index + 1;
        if (_singleUnit) { first = 0; last = _mBlocks * _nBlocks; }
        for (int u = first; u < last; u++)
        {
            int ni = u % _nBlocks, mi = u / _nBlocks;
            int n0 = ni * _panelRows, n1 = Math.Min(_n, n0 + _panelRows);
            int m0 = mi * _mRows, m1 = Math.Min(_m, m0 + _mRows);
            if (m0 >= m1) continue;
            if (_int4Gemm) { QuantGemmInt4.Gemm(_w, _m, _prefActPtr, _bias, _y, _n, m0, m1, n0, n1, (byte*)panel); continue; }
            if (_int8Gemm) { QuantGemmInt8.GemmOnPath(_w, _m, _prefActPtr, _bias, _y, _n, m0, m1, n0, n1, scratch, _int8Vnni); continue; }
            QuantKernels.DequantizeRows(_w, n0, n1, panel);
            // GemmBlock reads rows n0..n1 of W at w + row·k·4, so the panel stands in for W shifted by n0 rows.
            Gemm.GemmBlock(_x, m0, m1, _k, (byte*)(panel - (long)n0 * _k), DType.F32, _n, _bias, _y, n0, n1, scratch);
        }
    }
}
