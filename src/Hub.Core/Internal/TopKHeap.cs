// The one top-k selection of Hub: the runtime's TopK op and the generation's logits processors (which must agree with
// what the graph's TopK returns) both call it. A bounded min-heap keeps it O(n log k) for a vocabulary-sized row.
namespace Hub.Internal;

/// <summary>Top-k of a row, descending, ties to the lower index, NaN above everything (as torch.topk on CPU).</summary>
internal static class TopKHeap
{
    /// <summary>
    /// Writes the <c>min(values.Length, row.Length)</c> largest entries of <paramref name="row"/> into
    /// <paramref name="values"/>/<paramref name="indices"/> in descending order; returns how many were written.
    /// </summary>
    public static int Select(ReadOnlySpan<float> row, Span<float> values, Span<int> indices)
    {
        int k = Math.Min(values.Length, row.Length);
        if (indices.Length < k) throw new ArgumentException($"indices hold {indices.Length} entries, {k} needed", nameof(indices));
        // Min-heap on (value, -index): the root is the worst kept entry.
        for (int i = 0; i < k; i++)
        {
            values[i] = row[i]; indices[i] = i;
            SiftUp(values, indices, i);
        }
        for (int i = k; i < row.Length; i++)
        {
            float v = row[i], root = values[0];
            // Indices arrive in increasing order, so an equal value never beats the root: only a strictly larger value,
            // or a NaN over a number, enters.
            if (!(v > root) && !(float.IsNaN(v) && !float.IsNaN(root))) continue;
            values[0] = v; indices[0] = i;
            SiftDown(values, indices, 0, k);
        }
        // Heap sort into descending order: repeatedly move the worst to the end.
        for (int end = k - 1; end > 0; end--)
        {
            (values[0], values[end]) = (values[end], values[0]);
            (indices[0], indices[end]) = (indices[end], indices[0]);
            SiftDown(values, indices, 0, end);
        }
        return k;
    }

    /// <summary>True when (<paramref name="va"/>, <paramref name="ia"/>) ranks before (<paramref name="vb"/>, <paramref name="ib"/>): larger value, or equal and lower index; NaN ranks first.</summary>
    public static bool Better(float va, int ia, float vb, int ib)
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
