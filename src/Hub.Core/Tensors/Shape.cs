using System.Collections;
using System.Text;

namespace Hub;

/// <summary>An immutable tensor shape (row-major dimensions).</summary>
public sealed class Shape : IEquatable<Shape>, IReadOnlyList<long>
{
    private readonly long[] _dims;

    /// <summary>The scalar shape (rank 0, one element).</summary>
    public static readonly Shape Scalar = new(Array.Empty<long>());

    /// <summary>Creates a shape; every dimension must be non-negative.</summary>
    public Shape(params long[] dims)
    {
        foreach (var d in dims)
            if (d < 0) throw new ArgumentOutOfRangeException(nameof(dims), $"negative dimension in [{string.Join(", ", dims)}]");
        _dims = (long[])dims.Clone();
    }

    /// <summary>Creates a shape from int dimensions.</summary>
    public Shape(params int[] dims) : this(Array.ConvertAll(dims, d => (long)d)) { }

    /// <summary>Number of dimensions.</summary>
    public int Rank => _dims.Length;

    /// <summary>Dimension i; negative i counts from the end.</summary>
    public long this[int i] => _dims[i < 0 ? _dims.Length + i : i];

    /// <summary>Product of the dimensions (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in _dims) n = checked(n * d);
            return n;
        }
    }

    /// <summary>A copy of the dimensions.</summary>
    public long[] ToArray() => (long[])_dims.Clone();

    /// <summary>The dimensions as ints (throws when one does not fit).</summary>
    public int[] ToIntArray() => Array.ConvertAll(_dims, d => checked((int)d));

    /// <inheritdoc/>
    public int Count => _dims.Length;

    /// <inheritdoc/>
    public IEnumerator<long> GetEnumerator() => ((IEnumerable<long>)_dims).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => _dims.GetEnumerator();

    /// <inheritdoc/>
    public bool Equals(Shape? other) => other is not null && _dims.AsSpan().SequenceEqual(other._dims);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var d in _dims) h.Add(d);
        return h.ToHashCode();
    }

    /// <summary>Formats as <c>[2, 3, 4]</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < _dims.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(_dims[i]); }
        return sb.Append(']').ToString();
    }

    /// <summary>Shape equality.</summary>
    public static bool operator ==(Shape? a, Shape? b) => a is null ? b is null : a.Equals(b);
    /// <summary>Shape inequality.</summary>
    public static bool operator !=(Shape? a, Shape? b) => !(a == b);
}
