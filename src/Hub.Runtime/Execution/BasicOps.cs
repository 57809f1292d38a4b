using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using Hub.IR;
using Hub.Runtime.Kernels;
using Hub.Runtime.Threading;

namespace Hub.Runtime.Execution;

internal sealed unsafe class EmbeddingExec : OpExec
{
    private readonly Kernels.QuantMatrix _q;
    private readonly bool _quantized;

    public EmbeddingExec(Node n, InferRequest r) : base(n, r, 2, 2, 1)
    {
        var table = R.T[In[1]];
        if (table.Rank != 2) throw BadGraph($"table '{n.Inputs[1]}' must be [V, D], got {table.ShapeString()}");
        if (R.Model.IsWeight(In[1]) && R.Model.WeightInfoOf(In[1]).Quant is not null)
        {
            _q = QuantLinearExec.Bind(r, In[1], n.Name);   // int8/int4 rows are dequantized on lookup
            _quantized = true;
        }
        bool onlyReader = R.Model.IsWeight(In[1]) && OperatingSystem.IsLinux() && OnlyReader(n);
        // A lookup reads a few rows: map them 4 KiB at a time, not as the 2 MiB folios the weights' mapping asks for.
        if (onlyReader) MappedFile.AdviseSmallPages(_quantized ? _q.Data : table.B, _quantized ? (long)_q.N * (_q.Int4 ? _q.K / 2 : _q.K) : table.Count * table.DType.SizeOf());
        if (ReleaseTablePages && onlyReader)
        {
            // Stored weights live in the IR's read-only file mapping, where MADV_DONTNEED only unmaps (the page cache
            // keeps the bytes and the next lookup maps its row again).
            if (_quantized)
            {
                long groups = (long)_q.N * _q.Groups;
                _release = [
                    MappedFile.WholePages(_q.Data, (long)_q.N * (_q.Int4 ? _q.K / 2 : _q.K)),
                    _q.ScalesF16 != null ? MappedFile.WholePages((byte*)_q.ScalesF16, groups * 2) : MappedFile.WholePages((byte*)_q.Scales, groups * 4),
                    _q.Zeros != null ? MappedFile.WholePages(_q.Zeros, groups) : default,
                ];
            }
            else _release = [MappedFile.WholePages(table.B, table.Count * table.DType.SizeOf())];
            Release(); // binding read every scale of a quantized table
        }
    }

    /// <summary>
    /// HUB_EMBEDDING_RELEASE=1 unmaps the embedding table's pages again after each lookup: a decode step reads one
    /// row, but the kernel maps ~64 KiB around every page it faults in (fault-around), so a 32k-row table otherwise
    /// stays resident a few rows at a time — 11 MiB after 160 random ids on the 1b int4 model, up to the whole table
    /// (35 MiB int4, 250 MiB f32) over a long session (docs/performance.md "Memory"). Off by default: those pages are
    /// clean page cache the kernel can reclaim, while the release cost 0.11–0.19 ms per decode step in the small int8
    /// model's profile (0.005 ms kept; the re-fault and the TLB shootdown reach the spinning worker), 2–4 % of a step.
    /// </summary>
    internal static bool ReleaseTablePages { get; set; } = Environment.GetEnvironmentVariable("HUB_EMBEDDING_RELEASE") == "1";

    // The table is read by this node alone and shares no byte with another weight: a tied LM head streams every page
    // each step, so unmapping them would make it fault the whole table in again per token.
    private bool OnlyReader(Node n)
    {
        var ir = R.Model.Model;
        string name = n.Inputs[1];
        foreach (var other in ir.Graph.Nodes)
            if (!ReferenceEquals(other, n) && other.Inputs.Contains(name)) return false;
        var info = R.Model.WeightInfoOf(In[1]);
        var own = new HashSet<string>(StringComparer.Ordinal) { name };
        if (info.Quant is { } q) { own.Add(q.Scales); if (q.Zeros is { } z) own.Add(z); }
        var mine = own.Select(ir.GetWeight).ToArray();
        foreach (var w in ir.Graph.Weights)
        {
            if (own.Contains(w.Name)) continue;
            var v = ir.GetWeight(w.Name);
            foreach (var m in mine)
                if (v.Pointer < m.Pointer + (nint)m.ByteLength && m.Pointer < v.Pointer + (nint)v.ByteLength) return false;
        }
        return true;
    }

    private readonly (nint Start, nuint Length)[] _release = [];

    private void Release()
    {
        foreach (var (start, length) in _release)
            MappedFile.DropPages((start, length));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireI32(0);
        var table = X(1);
        Y().ShapeFrom(X(0), _quantized ? _q.K : table.Dims[1], append: true);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var ids = X(0); var table = X(1); var y = Y();
        int v = table.Dims[0], d = _quantized ? _q.K : table.Dims[1];
        for (long i = 0; i < ids.Count; i++)
        {
            int id = ids.I[i];
            if ((uint)id >= (uint)v)
                throw new ModelInputException($"token id {id} at position {i} of '{Node.Inputs[0]}' is outside the vocabulary [0, {v}) of '{Node.Inputs[1]}'");
            if (_quantized) QuantKernels.DequantizeRow(_q, id, y.F + i * d);
            else Gemm.ToFloat(table.B, table.DType, (long)id * d, y.F + i * d, d);
        }
        Release();
    }
}

internal sealed unsafe class NormExec : ChunkedExec
{
    private readonly bool _rms;
    private readonly float _eps;

    public NormExec(Node n, InferRequest r, bool rms) : base(n, r, 2, rms ? 2 : 3, 1)
    {
        _rms = rms;
        _eps = n.GetFloat("eps", rms ? 1e-6f : 1e-5f);
        RequireWeightF32(1);
        if (HasInput(2)) RequireWeightF32(2);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0);
        var x = X(0);
        int d = x.Dim(-1);
        if (X(1).Count != d) throw Bad($"gamma has {X(1).Count} values for rows of {d}");
        if (HasInput(2) && X(2).Count != d) throw Bad($"beta has {X(2).Count} values for rows of {d}");
        Y().SameShape(x);
        Y().DType = DType.F32;
    }

    private int _d;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        _d = x.Dim(-1);
        RunChunked(_d == 0 ? 0 : checked((int)(x.Count / _d)), x.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void Units(long u0, long u1)
    {
        int r0 = (int)u0, r1 = (int)u1;
        if (r1 <= r0) return;
        int d = _d;
        var xs = new ReadOnlySpan<float>(X(0).F + (long)r0 * d, (r1 - r0) * d);
        var ys = new Span<float>(Y().F + (long)r0 * d, (r1 - r0) * d);
        var gamma = new ReadOnlySpan<float>(X(1).F, d);
        if (_rms) Norms.RmsNorm(xs, gamma, ys, d, _eps);
        else Norms.LayerNorm(xs, gamma, HasInput(2) ? new ReadOnlySpan<float>(X(2).F, d) : default, ys, d, _eps);
    }
}

/// <summary>Row-chunked splits of row-wise ops over the pool, when the tensor is big enough to pay for the wake-up.</summary>
internal static class ParallelRows
{
    /// <summary>Elements below which one thread is faster than waking the pool (a decode step's rows stay serial).</summary>
    public const long MinElements = 32768;

    /// <summary>Chunks for <paramref name="rows"/> rows of <paramref name="elements"/> values in all on a pool of <paramref name="workers"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int Chunks(int workers, long rows, long elements) =>
        workers <= 1 || elements < MinElements || rows < 2 ? 1 : (int)Math.Min(rows, 4L * workers);
}

/// <summary>
/// An op whose work is <c>units</c> independent pieces (rows, blocks): run serially when small, else split into
/// <see cref="ParallelRows.Chunks"/> contiguous ranges on the pool, the op itself being the pool's work item.
/// </summary>
internal abstract class ChunkedExec : OpExec
{
    private long _units;
    private int _chunks;

    protected ChunkedExec(Node node, InferRequest r, int minInputs, int maxInputs, int outputs) : base(node, r, minInputs, maxInputs, outputs) { }

    /// <summary>Runs <see cref="Units"/> over [0, <paramref name="units"/>) that hold <paramref name="elements"/> values in all.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected void RunChunked(long units, long elements)
    {
        _units = units;
        _chunks = ParallelRows.Chunks(R.Model.Pool.Size, units, elements);
        if (_chunks <= 1) Units(0, units);
        else R.Model.Pool.Run(this, _chunks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public sealed override void Execute(int index, int worker) =>
        Units((long)index * _units / _chunks, (long)(index + 1) * _units / _chunks);

    /// <summary>Does units [<paramref name="u0"/>, <paramref name="u1"/>) (one chunk, or all of them).</summary>
    protected abstract void Units(long u0, long u1);
}

internal sealed unsafe class BinaryExec : ChunkedExec
{
    private readonly bool _mul;

    public BinaryExec(Node n, InferRequest r, bool mul) : base(n, r, 2, 2, 1) => _mul = mul;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0); RequireF32(1);
        var a = X(0); var b = X(1);
        bool ok = b.Rank <= a.Rank;
        for (int i = 1; ok && i <= b.Rank; i++) ok = b.Dim(-i) == a.Dim(-i);
        if (!ok) throw Bad($"'{Node.Inputs[1]}' {b.ShapeString()} is neither equal to nor a suffix of '{Node.Inputs[0]}' {a.ShapeString()}");
        Y().SameShape(a);
        Y().DType = DType.F32;
    }

    // Parallel split: blocks of bn elements (b broadcast over them), or, for equal shapes, 8-aligned element ranges.
    private long _bn, _block;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var a = X(0); var b = X(1);
        _bn = b.Count;
        if (_bn == 0) return;
        _block = _bn == a.Count ? Math.Max(8, (a.Count + 31) / 32 + 7 & ~7L) : _bn;
        RunChunked((a.Count + _block - 1) / _block, a.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void Units(long i0, long i1)
    {
        var a = X(0); var b = X(1); var y = Y();
        long n = a.Count;
        if (_bn == n)
        {
            // equal shapes: the blocks of [i0, i1) are one contiguous range, so one call (a decode step's 64..768
            // values in 8..32 blocks cost a call and a vector tail each)
            long off = i0 * _block, len = Math.Min(n, i1 * _block) - off;
            if (len > 0)
            {
                if (_mul) VecMath.Mul(a.F + off, b.F + off, y.F + off, len); else VecMath.Add(a.F + off, b.F + off, y.F + off, len);
            }
            return;
        }
        for (long i = i0; i < i1; i++)
        {
            long off = i * _block, len = Math.Min(_block, n - off);
            if (_mul) VecMath.Mul(a.F + off, b.F, y.F + off, len); else VecMath.Add(a.F + off, b.F, y.F + off, len);
        }
    }
}

internal enum UnaryKind { Scale, GeluErf, GeluTanh, Silu, Relu, Tanh, Sigmoid }

/// <summary>The one GELU dispatch behind a Gelu op and a Linear's fused GELU epilogue (so both give identical values).</summary>
internal static unsafe class GeluKernel
{
    /// <summary>Whether Gelu node <paramref name="gelu"/> is the tanh approximation; null when its 'approximate' is neither 'none' nor 'tanh'.</summary>
    public static bool? IsTanh(Node gelu) => gelu.GetString("approximate", "none") switch { "none" => false, "tanh" => true, _ => null };

    /// <summary>y = gelu(x) over <paramref name="n"/> values (y may alias x): exact erf form or the tanh approximation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Apply(float* x, float* y, long n, bool tanh)
    {
        if (tanh) VecMath.GeluTanh(x, y, n);
        else Activations.GeluErf(new ReadOnlySpan<float>(x, checked((int)n)), new Span<float>(y, (int)n));
    }
}

internal sealed unsafe class UnaryExec : OpExec
{
    private readonly UnaryKind _kind;
    private readonly float _alpha, _beta;

    private readonly bool _fused;

    public UnaryExec(Node n, InferRequest r, UnaryKind kind) : base(n, r, 1, 1, 1)
    {
        _kind = kind;
        _fused = kind == UnaryKind.GeluErf && r.Model.IsFusedGelu(n);
        if (kind == UnaryKind.Scale) { _alpha = n.GetFloat("alpha", 1f); _beta = n.GetFloat("beta", 0f); }
        if (kind == UnaryKind.GeluErf)
        {
            bool tanh = GeluKernel.IsTanh(n) ?? throw BadGraph($"attribute 'approximate' is '{n.GetString("approximate", "none")}'; expected 'none' or 'tanh'");
            if (tanh) _kind = UnaryKind.GeluTanh;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0);
        Y().SameShape(X(0));
        Y().DType = DType.F32;
    }

    // Elements per parallel chunk: large activations (a prefill's FFN, 128 × 1536 and up) are split over the pool.
    private const long Chunk = 16384;
    private long _n;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        _n = X(0).Count;
        if (_n == 0 || _fused) return; // a folded Gelu: its producing Linear already wrote the activation in place
        int chunks = (int)Math.Min((_n + Chunk - 1) / Chunk, WorkerPool.MaxItems);
        if (R.Model.Pool.Size == 1 || chunks <= 1) Apply(0, _n);
        else R.Model.Pool.Run(this, chunks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int worker)
    {
        long per = (_n + ((_n + Chunk - 1) / Chunk) - 1) / ((_n + Chunk - 1) / Chunk);
        per = (per + 7) & ~7L;
        long i0 = index * per, i1 = Math.Min(_n, i0 + per);
        if (i0 < i1) Apply(i0, i1 - i0);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Apply(long off, long n)
    {
        float* x = X(0).F + off, y = Y().F + off;
        switch (_kind)
        {
            case UnaryKind.Scale: VecMath.ScaleShift(x, _alpha, _beta, y, n); break;
            case UnaryKind.GeluErf: GeluKernel.Apply(x, y, n, tanh: false); break;
            case UnaryKind.GeluTanh: GeluKernel.Apply(x, y, n, tanh: true); break;
            case UnaryKind.Silu: VecMath.SiluMul(x, null, y, n); break;
            case UnaryKind.Relu: VecMath.Relu(x, y, n); break;
            case UnaryKind.Tanh: VecMath.Tanh(x, y, n); break;
            case UnaryKind.Sigmoid: VecMath.Sigmoid(x, y, n); break;
        }
    }
}

internal sealed unsafe class SwiGluExec : OpExec
{
    public SwiGluExec(Node n, InferRequest r) : base(n, r, 1, 1, 1) { }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0);
        int d = X(0).Dim(-1);
        if (d % 2 != 0) throw Bad($"last dim {d} of {X(0).ShapeString()} is odd; SwiGlu needs [gate | up]");
        Y().ShapeFrom(X(0), d / 2);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run() => Activations.SwiGlu(X(0).FSpan, Y().FSpan, Y().Dim(-1));
}

internal sealed unsafe class SoftmaxExec : OpExec
{
    private readonly long _axis;
    private float[] _row = Array.Empty<float>();

    public SoftmaxExec(Node n, InferRequest r) : base(n, r, 1, 1, 1) => _axis = n.GetInt("axis", -1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0);
        var x = X(0);
        int ax = Axis(_axis, x.Rank);
        if (ax < 0 || ax >= x.Rank) throw Bad($"axis {_axis} is outside rank {x.Rank}");
        if (ax != x.Rank - 1 && _row.Length < x.Dims[ax]) _row = new float[x.Dims[ax]]; // grow-only
        Y().SameShape(x);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0); var y = Y();
        int ax = Axis(_axis, x.Rank);
        int n = x.Dims[ax];
        if (ax == x.Rank - 1) { Reductions.Softmax(x.FSpan, y.FSpan, n); return; }
        long outer = Prod(x, 0, ax), inner = Prod(x, ax + 1, x.Rank);
        var row = _row.AsSpan(0, n);
        for (long o = 0; o < outer; o++)
            for (long i = 0; i < inner; i++)
            {
                float* src = x.F + o * n * inner + i, dst = y.F + o * n * inner + i;
                for (int j = 0; j < n; j++) row[j] = src[j * inner];
                Reductions.Softmax(row, row, n);
                for (int j = 0; j < n; j++) dst[j * inner] = row[j];
            }
    }
}

internal sealed unsafe class TopKExec : OpExec
{
    private readonly int _k;

    public TopKExec(Node n, InferRequest r) : base(n, r, 1, 1, 2)
    {
        _k = checked((int)n.GetInt("k"));
        if (_k < 0) throw BadGraph($"k = {_k} is negative");
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0);
        var x = X(0);
        if (_k > x.Dim(-1)) throw Bad($"k = {_k} exceeds the last dim {x.Dim(-1)} of {x.ShapeString()}");
        Y(0).ShapeFrom(x, _k); Y(0).DType = DType.F32;
        Y(1).ShapeFrom(x, _k); Y(1).DType = DType.I32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        int n = x.Dim(-1);
        long rows = n == 0 ? 0 : x.Count / n;
        for (long r = 0; r < rows; r++)
            Reductions.TopK(new ReadOnlySpan<float>(x.F + r * n, n), _k, new Span<float>(Y(0).F + r * _k, _k), new Span<int>(Y(1).I + r * _k, _k));
    }
}

internal sealed unsafe class MatMulExec : OpExec
{
    public MatMulExec(Node n, InferRequest r) : base(n, r, 2, 2, 1)
    {
        for (int i = 0; i < 2; i++) RequireWeightF32(i);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0); RequireF32(1);
        var a = X(0); var b = X(1);
        if (a.Rank < 2 || b.Rank < 2) throw Bad($"needs rank ≥ 2, got {a.ShapeString()} and {b.ShapeString()}");
        if (a.Dim(-1) != b.Dim(-2)) throw Bad($"inner dims differ: {a.ShapeString()} · {b.ShapeString()}");
        long ba = Prod(a, 0, a.Rank - 2), bb = Prod(b, 0, b.Rank - 2);
        if (bb != 1 && bb != ba) throw Bad($"batch dims of {a.ShapeString()} and {b.ShapeString()} differ");
        Span<int> d = stackalloc int[TensorRt.MaxRank];
        for (int i = 0; i < a.Rank - 1; i++) d[i] = a.Dims[i];
        d[a.Rank - 1] = b.Dim(-1);
        Y().SetShape(d[..a.Rank]);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var a = X(0); var b = X(1); var y = Y();
        int m = a.Dim(-2), k = a.Dim(-1), n = b.Dim(-1);
        long batches = Prod(a, 0, a.Rank - 2), bb = Prod(b, 0, b.Rank - 2);
        for (long bi = 0; bi < batches; bi++)
        {
            float* ap = a.F + bi * m * k, bp = b.F + (bb == 1 ? 0 : bi * k * n), yp = y.F + bi * m * n;
            for (int i = 0; i < m; i++)
            {
                var yr = new Span<float>(yp + (long)i * n, n);
                yr.Clear();
                for (int p = 0; p < k; p++)
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(bp + (long)p * n, n), ap[(long)i * k + p], yr, yr);
            }
        }
    }
}
