namespace Hub.Weights;

/// <summary>
/// A weight that is produced on demand: a checkpoint tensor as stored, or a transform of one or more tensors
/// (transpose, RoPE row permutation, row concatenation). Conversion materializes one at a time, so peak memory
/// is about the largest tensor, never the whole model.
/// </summary>
public sealed class LazyTensor
{
    private readonly Func<TensorView>? _view;
    private readonly Func<float[]>? _compute;

    /// <summary>Shape of the produced tensor.</summary>
    public Shape Shape { get; }
    /// <summary>Element type as stored at the origin (F32 for computed tensors of float origin keeps the widest source).</summary>
    public DType SourceDType { get; }
    /// <summary>Where it comes from, for error messages (<c>file: tensor</c> or a transform description).</summary>
    public string Origin { get; }

    private LazyTensor(Shape shape, DType dtype, string origin, Func<TensorView>? view, Func<float[]>? compute)
    {
        Shape = shape; SourceDType = dtype; Origin = origin; _view = view; _compute = compute;
    }

    /// <summary>A checkpoint tensor as stored.</summary>
    public static LazyTensor FromSource(ITensorSource source, TensorInfo info) =>
        new(info.Shape, info.DType, $"{info.FilePath}: {info.Name}", () => source.Open(info.Name), null);

    /// <summary>A tensor computed in float32 by <paramref name="compute"/>.</summary>
    public static LazyTensor FromFunc(Shape shape, DType sourceDType, string origin, Func<float[]> compute) =>
        new(shape, sourceDType, origin, null, compute);

    /// <summary>A constant float32 tensor.</summary>
    public static LazyTensor FromArray(float[] data, Shape shape, string origin)
    {
        if (data.Length != shape.ElementCount) throw new ArgumentException($"{origin}: {data.Length} values for shape {shape}");
        return new(shape, DType.F32, origin, null, () => data);
    }

    /// <summary>True when the bytes can be written as stored (no transform).</summary>
    public bool IsPassthrough => _view is not null;

    /// <summary>The stored view (only when <see cref="IsPassthrough"/>).</summary>
    public TensorView OpenView() => _view?.Invoke() ?? throw new InvalidOperationException($"{Origin} is computed, not stored");

    /// <summary>Produces the values as float32 (upcasting f16/bf16 exactly).</summary>
    public float[] ToFloat32()
    {
        if (_compute is not null)
        {
            var r = _compute();
            if (r.Length != Shape.ElementCount) throw new InvalidOperationException($"{Origin}: produced {r.Length} values for {Shape}");
            return r;
        }
        var v = _view!();
        if (v.Shape != Shape) throw new CheckpointFormatException(Origin, null, $"shape {v.Shape} differs from the declared {Shape}");
        return v.ToFloat32();
    }

    /// <summary>Reinterprets the shape (same element count).</summary>
    public LazyTensor Reshape(params long[] dims)
    {
        var s = new Shape(dims);
        if (s.ElementCount != Shape.ElementCount) throw new ArgumentException($"{Origin}: cannot reshape {Shape} to {s}");
        if (_view is not null)
        {
            var f = _view;
            return new(s, SourceDType, Origin, () => { var v = f(); return new TensorView(v.DType, s, v.Pointer, v.ByteLength); }, null);
        }
        return new(s, SourceDType, Origin, null, _compute);
    }

    /// <summary>The transpose of a 2-D tensor ([r, c] → [c, r]); used for GPT-2 Conv1D and TF dense kernels.</summary>
    public LazyTensor Transpose2D()
    {
        if (Shape.Rank != 2) throw new ArgumentException($"{Origin}: transpose needs rank 2, got {Shape}");
        long r = Shape[0], c = Shape[1];
        return new(new Shape(c, r), SourceDType, $"transpose({Origin})", null, () =>
        {
            var src = ToFloat32();
            var dst = new float[src.Length];
            for (long i = 0; i < r; i++)
                for (long j = 0; j < c; j++)
                    dst[j * r + i] = src[i * c + j];
            return dst;
        });
    }

    /// <summary>Rows [start, start+count) of a 2-D (or 1-D) tensor.</summary>
    public LazyTensor SliceRows(long start, long count)
    {
        long rows = Shape[0];
        long rowLen = Shape.ElementCount / Math.Max(rows, 1);
        if (start < 0 || count < 0 || start + count > rows) throw new ArgumentException($"{Origin}: rows [{start}, {start + count}) outside {Shape}");
        var dims = Shape.ToArray(); dims[0] = count;
        return new(new Shape(dims), SourceDType, $"{Origin}[{start}:{start + count}]", null, () =>
        {
            var src = ToFloat32();
            return src.AsSpan((int)(start * rowLen), (int)(count * rowLen)).ToArray();
        });
    }

    /// <summary>Concatenates tensors along axis 0 (e.g. fusing q/k/v or gate/up projections).</summary>
    public static LazyTensor ConcatRows(string origin, params LazyTensor[] parts)
    {
        if (parts.Length == 0) throw new ArgumentException("nothing to concatenate");
        var tail = parts[0].Shape.ToArray()[1..];
        long rows = 0;
        foreach (var p in parts)
        {
            if (!p.Shape.ToArray()[1..].AsSpan().SequenceEqual(tail))
                throw new ArgumentException($"{origin}: cannot concatenate {p.Origin} {p.Shape} with {parts[0].Origin} {parts[0].Shape}");
            rows += p.Shape[0];
        }
        var dims = parts[0].Shape.ToArray(); dims[0] = rows;
        var shape = new Shape(dims);
        var dtype = parts.Select(p => p.SourceDType).Distinct().Count() == 1 ? parts[0].SourceDType : DType.F32;
        return new(shape, dtype, origin, null, () =>
        {
            var dst = new float[shape.ElementCount];
            int at = 0;
            foreach (var p in parts) { var v = p.ToFloat32(); v.CopyTo(dst, at); at += v.Length; }
            return dst;
        });
    }

    /// <summary>
    /// Applies an arbitrary float32 transform that keeps or changes the shape (documented at the call site).
    /// </summary>
    public LazyTensor Map(string what, Shape newShape, Func<float[], float[]> f) =>
        new(newShape, SourceDType, $"{what}({Origin})", null, () => f(ToFloat32()));
}
