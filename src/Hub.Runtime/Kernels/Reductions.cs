// Row softmax (max-subtracted, as torch.softmax) and top-k (descending, ties to the lowest index, as torch.topk on
// CPU for distinct values; a bounded min-heap keeps it O(n log k) for a vocabulary-sized row).

using Hub.Internal;

namespace Hub.Runtime.Kernels;

/// <summary>Softmax and top-k over rows.</summary>
public static class Reductions
{
    /// <summary>Softmax of each row of <paramref name="n"/> values.</summary>
    public static void Softmax(ReadOnlySpan<float> x, Span<float> dst, int n)
    {
        int rows = n == 0 ? 0 : x.Length / n;
        for (int r = 0; r < rows; r++)
        {
            unsafe
            {
                fixed (float* xp = x.Slice(r * n, n), dp = dst.Slice(r * n, n)) VecMath.SoftmaxRow(xp, dp, n);
            }
        }
    }

    /// <summary>Scalar twin of <see cref="Softmax"/> (double accumulation).</summary>
    public static void SoftmaxReference(ReadOnlySpan<float> x, Span<float> dst, int n)
    {
        int rows = n == 0 ? 0 : x.Length / n;
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int i = 0; i < n; i++) max = Math.Max(max, x[r * n + i]);
            for (int i = 0; i < n; i++) sum += Math.Exp(x[r * n + i] - max);
            for (int i = 0; i < n; i++) dst[r * n + i] = (float)(Math.Exp(x[r * n + i] - max) / sum);
        }
    }

    /// <summary>
    /// The <paramref name="k"/> largest values of <paramref name="row"/> in descending order (ties: lower index first).
    /// <paramref name="heapValues"/>/<paramref name="heapIndices"/> receive the result and must hold k entries.
    /// </summary>
    public static void TopK(ReadOnlySpan<float> row, int k, Span<float> heapValues, Span<int> heapIndices) =>
        TopKHeap.Select(row, heapValues[..k], heapIndices[..k]);

    /// <summary>Scalar twin of <see cref="TopK"/>: k passes of an arg-max.</summary>
    public static void TopKReference(ReadOnlySpan<float> row, int k, Span<float> values, Span<int> indices)
    {
        var taken = new bool[row.Length];
        for (int r = 0; r < k; r++)
        {
            int best = -1;
            for (int i = 0; i < row.Length; i++)
                if (!taken[i] && (best < 0 || TopKHeap.Better(row[i], i, row[best], best))) best = i;
            taken[best] = true;
            values[r] = row[best]; indices[r] = best;
        }
    }
}
