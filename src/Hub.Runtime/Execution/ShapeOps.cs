using System.Runtime.CompilerServices;
using Hub.IR;

namespace Hub.Runtime.Execution;

/// <summary>Copies of 4-byte elements along one axis: the data movement behind Slice, KeepLast, Split and Concat.</summary>
internal static unsafe class AxisCopy
{
    /// <summary>
    /// For each of <paramref name="outer"/> blocks: copies <paramref name="len"/>·inner elements from
    /// src[block·srcDim·inner + srcStart·inner] to dst[block·dstDim·inner + dstStart·inner].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Copy(byte* src, int srcDim, int srcStart, byte* dst, int dstDim, int dstStart, int len, long outer, long inner)
    {
        long bytes = len * inner * 4;
        for (long o = 0; o < outer; o++)
            Buffer.MemoryCopy(src + (o * srcDim + srcStart) * inner * 4, dst + (o * dstDim + dstStart) * inner * 4, bytes, bytes);
    }

    public static long Prod(TensorRt t, int from, int to)
    {
        long p = 1;
        for (int i = from; i < to; i++) p *= t.Dims[i];
        return p;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WithDim(TensorRt dst, TensorRt src, int axis, int value)
    {
        Span<int> d = stackalloc int[TensorRt.MaxRank];
        for (int i = 0; i < src.Rank; i++) d[i] = src.Dims[i];
        d[axis] = value;
        dst.SetShape(d[..src.Rank]);
        dst.DType = src.DType;
    }
}

internal sealed unsafe class SliceExec : OpExec
{
    private readonly long _axis, _start;
    private readonly long? _end;
    private int _s, _len, _ax;

    public SliceExec(Node n, InferRequest r) : base(n, r, 1, 1, 1)
    {
        _axis = n.GetInt("axis");
        _start = n.GetInt("start", 0);
        _end = n.Has("end") ? n.GetInt("end") : null;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        var x = X(0);
        _ax = Axis(_axis, x.Rank);
        if (_ax < 0 || _ax >= x.Rank) throw Bad($"axis {_axis} is outside rank {x.Rank}");
        int d = x.Dims[_ax];
        long s = _start < 0 ? _start + d : _start, e = _end is long ev ? (ev < 0 ? ev + d : ev) : d;
        s = Math.Clamp(s, 0, d); e = Math.Clamp(e, s, d); // Python slice clamping
        _s = (int)s; _len = (int)(e - s);
        AxisCopy.WithDim(Y(), x, _ax, _len);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        AxisCopy.Copy(x.B, x.Dims[_ax], _s, Y().B, _len, 0, _len, Prod(x, 0, _ax), Prod(x, _ax + 1, x.Rank));
    }
}

internal sealed unsafe class KeepLastExec : OpExec
{
    private int _s, _len;

    public KeepLastExec(Node n, InferRequest r) : base(n, r, 2, 2, 1) { }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        var x = X(0); var nt = X(1);
        if (x.Rank < 2) throw Bad($"input {x.ShapeString()} needs rank ≥ 2");
        if (nt.DType != DType.I32 || nt.Count != 1) throw Bad($"'{Node.Inputs[1]}' must be I32 [1], got {nt.DType} {nt.ShapeString()}");
        int t = x.Dims[1];
        int n = nt.Ptr == 0 ? 0 : nt.I[0];
        if (n < 0) throw Bad($"'{Node.Inputs[1]}' = {n} is negative; use 0 for every position");
        _len = n == 0 ? t : Math.Min(n, t);
        _s = t - _len;
        AxisCopy.WithDim(Y(), x, 1, _len);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        AxisCopy.Copy(x.B, x.Dims[1], _s, Y().B, _len, 0, _len, x.Dims[0], Prod(x, 2, x.Rank));
    }
}

internal sealed unsafe class SplitExec : ChunkedExec
{
    private readonly int[] _sizes;

    public SplitExec(Node n, InferRequest r) : base(n, r, 1, 1, -1)
    {
        _sizes = n.GetInts("sizes").Select(v => checked((int)v)).ToArray();
        if (_sizes.Length != n.Outputs.Count) throw BadGraph($"{_sizes.Length} sizes for {n.Outputs.Count} outputs");
        if (_sizes.Any(s => s < 0)) throw BadGraph("negative size in 'sizes'");
        _elided = r.Model.IsElidedSplit(n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        var x = X(0);
        long sum = 0;
        foreach (var s in _sizes) sum += s;
        if (sum != x.Dim(-1)) throw Bad($"sizes sum to {sum} but the last dim of {x.ShapeString()} is {x.Dim(-1)}");
        for (int i = 0; i < _sizes.Length; i++) AxisCopy.WithDim(Y(i), x, x.Rank - 1, _sizes[i]);
    }

    // Left to its Attention reader when that reads the fused projection in place (CompiledModel.IsElidedSplit).
    private readonly bool _elided;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        // Its Attention reads q, k, v in place from the input when it runs the direct kernel ([B, T, D] input, no
        // cache: keys = queries = T); otherwise this copy (the same pool-split routine as any Split) feeds it.
        if (_elided && x.Rank >= 2 && AttentionExec.DirectPath(x.Dims[x.Rank - 2], x.Dims[x.Rank - 2])) return;
        RunChunked(Prod(x, 0, x.Rank - 1), x.Count);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override void Units(long r0, long r1)
    {
        var x = X(0);
        int d = x.Dim(-1), off = 0;
        for (int i = 0; i < _sizes.Length; i++)
        {
            AxisCopy.Copy(x.B + r0 * d * 4, d, off, Y(i).B + r0 * _sizes[i] * 4, _sizes[i], 0, _sizes[i], r1 - r0, 1);
            off += _sizes[i];
        }
    }
}

internal sealed unsafe class ConcatExec : OpExec
{
    private readonly long _axis;
    private int _ax;

    public ConcatExec(Node n, InferRequest r) : base(n, r, 1, int.MaxValue, 1) => _axis = n.GetInt("axis", -1);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        var x0 = X(0);
        _ax = Axis(_axis, x0.Rank);
        if (_ax < 0 || _ax >= x0.Rank) throw Bad($"axis {_axis} is outside rank {x0.Rank}");
        int total = 0;
        for (int i = 0; i < In.Length; i++)
        {
            if (In[i] < 0) throw Bad($"input {i} is absent");
            var xi = X(i);
            if (xi.Rank != x0.Rank || xi.DType != x0.DType) throw Bad($"'{Node.Inputs[i]}' {xi.DType} {xi.ShapeString()} does not match '{Node.Inputs[0]}' {x0.DType} {x0.ShapeString()}");
            for (int a = 0; a < x0.Rank; a++)
                if (a != _ax && xi.Dims[a] != x0.Dims[a]) throw Bad($"'{Node.Inputs[i]}' {xi.ShapeString()} differs from '{Node.Inputs[0]}' {x0.ShapeString()} outside axis {_ax}");
            total += xi.Dims[_ax];
        }
        AxisCopy.WithDim(Y(), x0, _ax, total);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var y = Y();
        long outer = Prod(y, 0, _ax), inner = Prod(y, _ax + 1, y.Rank);
        int off = 0;
        for (int i = 0; i < In.Length; i++)
        {
            var xi = X(i);
            int len = xi.Dims[_ax];
            AxisCopy.Copy(xi.B, len, 0, y.B, y.Dims[_ax], off, len, outer, inner);
            off += len;
        }
    }
}

internal sealed unsafe class GatherRowsExec : OpExec
{
    public GatherRowsExec(Node n, InferRequest r) : base(n, r, 2, 2, 1) { }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        var x = X(0); var idx = X(1);
        RequireI32(1);
        if (x.Rank != 3) throw Bad($"input {x.ShapeString()} must be [B, T, D]");
        if (idx.Count != x.Dims[0]) throw Bad($"index has {idx.Count} entries for batch {x.Dims[0]}");
        Span<int> d = stackalloc int[] { x.Dims[0], x.Dims[2] };
        Y().SetShape(d);
        Y().DType = x.DType;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0); var idx = X(1); var y = Y();
        int t = x.Dims[1], d = x.Dims[2];
        for (int b = 0; b < x.Dims[0]; b++)
        {
            int i = idx.I[b];
            if ((uint)i >= (uint)t) throw new ModelInputException($"node '{Node.Name}' (GatherRows): index {i} for batch row {b} is outside [0, {t})");
            Buffer.MemoryCopy(x.B + ((long)b * t + i) * d * 4, y.B + (long)b * d * 4, d * 4L, d * 4L);
        }
    }
}
