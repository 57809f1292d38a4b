namespace Hub.Runtime.Tests;

/// <summary>
/// Inputs of an exported causal LM for the in-process benchmarks over an IR folder (HUB_BENCH_IR): input_ids and,
/// where the graph has them, positions / position_ids, an all-ones attention_mask and logits_to_keep = 1.
/// </summary>
internal static class BenchFeed
{
    private static readonly int[] KeepLast = { 1 };

    /// <summary>The integer environment setting <paramref name="name"/> of a benchmark, or <paramref name="fallback"/> when unset or not a number.</summary>
    internal static int EnvInt(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out var v) ? v : fallback;

    /// <summary>
    /// Sets the inputs for <paramref name="n"/> new tokens after the request's cached positions; <paramref name="ones"/>
    /// (the mask source) is replaced by a longer all-ones array when the context outgrows it.
    /// </summary>
    internal static void Set(InferRequest req, ICollection<string> names, int[] ids, int[] positions, int n, ref float[] ones)
    {
        int total = req.PastLength + n;
        if (ones.Length < total) ones = Enumerable.Repeat(1f, Math.Max(total, 2 * ones.Length)).ToArray();
        req.SetInput("input_ids", ids, 1, n);
        if (names.Contains("positions")) req.SetInput("positions", positions, 1, n);
        if (names.Contains("position_ids")) req.SetInput("position_ids", positions, 1, n);
        if (names.Contains("attention_mask")) req.SetInput("attention_mask", ones.AsSpan(0, total), 1, total);
        if (names.Contains("logits_to_keep")) req.SetInput("logits_to_keep", KeepLast, 1);
    }

    /// <summary>One decode step: token (past·13) mod 1000 + 1 at position past (written into id/pos), then Infer.</summary>
    internal static void DecodeStep(InferRequest req, ICollection<string> names, int[] id, int[] pos, ref float[] ones)
    {
        int past = req.PastLength;
        pos[0] = past; id[0] = (past * 13) % 1000 + 1;
        Set(req, names, id, pos, 1, ref ones);
        req.Infer();
    }
}
