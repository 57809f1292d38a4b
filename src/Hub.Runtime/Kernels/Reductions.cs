// Row softmax (max-subtracted, as torch.softmax) and top-k (descending, ties to the lowest index, as torch.topk on
// CPU for distinct values; a bounded min-heap keeps it O(n log k) for a vocabulary-sized row).

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
    public static void TopK(ReadOnlySpan<float> row, int k, Span<float> heapValues, Span<int> heapIndices)
    {
        int size = 0;
        // Min-heap on (value, -index): the root is the current worst kept entry.
        for (int i = 0; i < row.Length; i++)
        {
            float v = row[i];
            if (size < k)
            {
                heapValues[size] = v; heapIndices[size] = i;
                SiftUp(heapValues, heapIndices, size++);
            }
            else if (k > 0 && Better(v, i, heapValues[0], heapIndices[0]))
            {
                heapValues[0] = v; heapIndices[0] = i;
                SiftDown(heapValues, heapIndices, 0, size);
            }
        }
        // Heap sort into descending order: repeatedly move the worst to the end.
        for (int end = size - 1; end > 0; end--)
        {
            (heapValues[0], heapValues[end]) = (heapValues[end], heapValues[0]);
            (heapIndices[0], heapIndices[end]) = (heapIndices[end], heapIndices[0]);
            SiftDown(heapValues, heapIndices, 0, end);
        }
    }

    /// <summary>Scalar twin of <see cref="TopK"/>: k passes of an arg-max.</summary>
    public static void TopKReference(ReadOnlySpan<float> row, int k, Span<float> values, Span<int> indices)
    {
        var taken = new bool[row.Length];
        for (int r = 0; r < k; r++)
        {
            int best = -1;
            for (int i = 0; i < row.Length; i++)
                if (!taken[i] && (best < 0 || Better(row[i], i, row[best], best))) best = i;
            taken[best] = true;
            values[r] = row[best]; indices[r] = best;
        }
    }

    // a ranks before b: larger value, or equal value and lower index. NaN ranks above everything (as torch.topk).
    private static bool Better(float va, int ia, float vb, int ib)
    {
        bool na = float.IsNaN(va), nb = float.IsNaN(vb);
        if (na || nb) return na && (!nb || ia < ib);
        return va > vb || (va == vb && ia < ib);
    }

    private static void SiftUp(Span<float> v, Span<int> ix, int i)
    {
        while (i > 0)
        {
            int p = (i - 1) / 2;
            if (!Better(v[p], ix[p], v[i], ix[i])) break;
            (v[p], v[i]) = (v[i], v[p]); (ix[p], ix[i]) = (ix[i], ix[p]);
            i = p;
        }
    }

    private static void SiftDown(Span<float> v, Span<int> ix, int i, int size)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, w = i;
            if (l < size && Better(v[w], ix[w], v[l], ix[l])) w = l;
            if (r < size && Better(v[w], ix[w], v[r], ix[r])) w = r;
            if (w == i) return;
            (v[w], v[i]) = (v[i], v[w]); (ix[w], ix[i]) = (ix[i], ix[w]);
            i = w;
        }
    }
}
