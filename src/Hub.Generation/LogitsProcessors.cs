// Logits processors and warpers, after transformers' generation/logits_process.py, applied to ONE row (the last
// position of one sequence) in place. Order (transformers' _get_logits_processor, then OpenAI-style penalties):
//   1. repetition_penalty      (RepetitionPenaltyLogitsProcessor; prompt + output tokens)
//   2. no_repeat_ngram_size    (NoRepeatNGramLogitsProcessor; prompt + output tokens)
//   3. bad_words_ids           (NoBadWordsLogitsProcessor)
//   4. min_new_tokens          (MinNewTokensLengthLogitsProcessor: every eos id masked)
//   5. presence/frequency      (not in transformers; vLLM/OpenAI semantics, output tokens only)
// and, only when sampling (do_sample), the warpers:
//   6. temperature  7. top_k  8. top_p  9. min_p  10. typical_p
// then softmax and one draw from a seeded xoshiro256** generator. Masked tokens get -inf.
// Not supported: epsilon/eta cutoff, sequence bias, suppress tokens, forced BOS/EOS, guidance.

using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Hub.Internal;

namespace Hub.Generation;

/// <summary>
/// The individual logits processors and warpers on one logits row, in place; <see cref="LogitsPipeline"/> chains them in
/// transformers' order. Public so that callers can test or compose them.
/// </summary>
public static class LogitsProcessors
{
    /// <summary>CTRL repetition penalty: every token present in <paramref name="history"/> has its logit divided by
    /// <paramref name="penalty"/> when positive and multiplied when negative. <paramref name="seen"/> is a vocab-sized
    /// scratch that must be all false on entry and is left all false.</summary>
    public static void RepetitionPenalty(Span<float> logits, ReadOnlySpan<int> history, float penalty, Span<bool> seen)
    {
        if (penalty == 1f) return;
        foreach (var t in history)
        {
            if ((uint)t >= (uint)logits.Length || seen[t]) continue;
            seen[t] = true;
            var l = logits[t];
            logits[t] = l < 0 ? l * penalty : l / penalty;
        }
        foreach (var t in history) if ((uint)t < (uint)seen.Length) seen[t] = false;
    }

    /// <summary>Bans every token that would complete an n-gram of size <paramref name="n"/> already present in
    /// <paramref name="history"/>.</summary>
    public static void NoRepeatNgram(Span<float> logits, ReadOnlySpan<int> history, int n)
    {
        if (n <= 0 || history.Length + 1 < n) return;
        if (n == 1) { foreach (var t in history) if ((uint)t < (uint)logits.Length) logits[t] = float.NegativeInfinity; return; }
        var prefix = history[(history.Length - n + 1)..];
        for (int i = 0; i + n <= history.Length; i++)
        {
            if (history.Slice(i, n - 1).SequenceEqual(prefix))
            {
                var t = history[i + n - 1];
                if ((uint)t < (uint)logits.Length) logits[t] = float.NegativeInfinity;
            }
        }
    }

    /// <summary>Bans the last token of every bad sequence whose other tokens end <paramref name="history"/>.</summary>
    public static void BadWords(Span<float> logits, ReadOnlySpan<int> history, int[][] badWords)
    {
        foreach (var seq in badWords)
        {
            var last = seq[^1];
            if ((uint)last >= (uint)logits.Length) continue;
            var prefix = seq.AsSpan(0, seq.Length - 1);
            if (prefix.Length == 0 || (history.Length >= prefix.Length && history[^prefix.Length..].SequenceEqual(prefix)))
                logits[last] = float.NegativeInfinity;
        }
    }

    /// <summary>Masks every eos id while fewer than <paramref name="minNewTokens"/> tokens were generated.</summary>
    public static void MinNewTokens(Span<float> logits, int generated, int minNewTokens, ReadOnlySpan<int> eosIds)
    {
        if (generated >= minNewTokens) return;
        foreach (var e in eosIds) if ((uint)e < (uint)logits.Length) logits[e] = float.NegativeInfinity;
    }

    /// <summary>OpenAI-style penalties over the generated tokens: <c>logit -= presence·[count &gt; 0] + frequency·count</c>.
    /// <paramref name="counts"/> is a vocab-sized scratch that must be all zero on entry and is left all zero.</summary>
    public static void PresenceFrequency(Span<float> logits, ReadOnlySpan<int> generated, float presence, float frequency, Span<int> counts)
    {
        if (presence == 0f && frequency == 0f) return;
        foreach (var t in generated) if ((uint)t < (uint)counts.Length) counts[t]++;
        foreach (var t in generated)
        {
            if ((uint)t >= (uint)counts.Length || counts[t] == 0) continue;
            logits[t] -= presence + frequency * counts[t];
            counts[t] = 0;
        }
    }

    /// <summary>Divides logits by the temperature.</summary>
    public static void Temperature(Span<float> logits, float temperature)
    {
        if (temperature == 1f) return;
        var inv = 1f / temperature;
        if (float.IsFinite(inv)) { for (int i = 0; i < logits.Length; i++) logits[i] *= inv; return; }
        for (int i = 0; i < logits.Length; i++) logits[i] /= temperature;
    }

    /// <summary>Keeps tokens whose logit is at least the k-th largest (ties at the boundary kept, as torch.topk-based
    /// masking does); <paramref name="scratch"/> holds at least vocab floats.</summary>
    public static void TopK(Span<float> logits, int k, int minTokensToKeep, Span<float> scratch)
    {
        k = Math.Max(k, minTokensToKeep);
        if (k <= 0 || k >= logits.Length) return;
        var copy = scratch[..logits.Length];
        logits.CopyTo(copy);
        // k-th largest = element at index (n - k) in ascending order.
        var kth = QuickSelect(copy, copy.Length - k);
        for (int i = 0; i < logits.Length; i++) if (logits[i] < kth) logits[i] = float.NegativeInfinity;
    }

    /// <summary>Nucleus: keeps the smallest set of most likely tokens whose probability reaches <paramref name="p"/>
    /// (and at least <paramref name="minTokensToKeep"/>). <paramref name="idx"/> and <paramref name="prob"/> are vocab-sized scratch.</summary>
    public static void TopP(Span<float> logits, float p, int minTokensToKeep, Span<int> idx, Span<float> prob)
    {
        if (p >= 1f) return;
        int n = SortedProbabilities(logits, idx, prob);
        double cum = 0;
        int keep = n;
        for (int r = 0; r < n; r++)
        {
            cum += prob[r];
            if (cum >= p) { keep = r + 1; break; }
        }
        keep = Math.Max(keep, Math.Min(minTokensToKeep, n));
        for (int r = keep; r < n; r++) logits[idx[r]] = float.NegativeInfinity;
    }

    /// <summary>Min-p: drops tokens whose probability is below <paramref name="minP"/> × the top probability.</summary>
    public static void MinP(Span<float> logits, float minP, int minTokensToKeep, Span<int> idx, Span<float> prob)
    {
        if (minP <= 0f) return;
        int n = SortedProbabilities(logits, idx, prob);
        if (n == 0) return;
        var threshold = minP * prob[0];
        for (int r = Math.Min(minTokensToKeep, n); r < n; r++)
            if (prob[r] < threshold) logits[idx[r]] = float.NegativeInfinity;
    }

    /// <summary>Locally typical sampling (Meister et al. 2022, transformers' TypicalLogitsWarper): orders tokens by
    /// |−log p − H| and keeps them until their mass reaches <paramref name="mass"/>.</summary>
    public static void Typical(Span<float> logits, float mass, int minTokensToKeep, Span<int> idx, Span<float> key)
    {
        if (mass >= 1f) return;
        float max = float.NegativeInfinity;
        int n = 0;
        for (int i = 0; i < logits.Length; i++) if (logits[i] > float.NegativeInfinity) { idx[n++] = i; if (logits[i] > max) max = logits[i]; }
        if (n == 0) return;
        double z = 0;
        for (int r = 0; r < n; r++) z += Math.Exp(logits[idx[r]] - max);
        var logZ = Math.Log(z) + max;
        double entropy = 0;
        for (int r = 0; r < n; r++) { var lp = logits[idx[r]] - logZ; entropy -= Math.Exp(lp) * lp; }
        for (int r = 0; r < n; r++) key[r] = (float)Math.Abs(-(logits[idx[r]] - logZ) - entropy);
        key[..n].Sort(idx[..n]);
        // transformers: last_ind = count(cumulative < mass), keep sorted positions 0..last_ind (inclusive) and ties.
        double cum = 0;
        int last = 0;
        for (int r = 0; r < n; r++) { cum += Math.Exp(logits[idx[r]] - logZ); if (cum < mass) last = r + 1; else break; }
        last = Math.Min(last, n - 1);
        var cut = key[last];
        for (int r = 0; r < n; r++)
            if (r >= minTokensToKeep && key[r] > cut) logits[idx[r]] = float.NegativeInfinity;
    }

    /// <summary>
    /// The <c>values.Length</c> largest logits of <paramref name="logits"/> in descending order with their ids (ties to the
    /// lowest id), in one pass with a small min-heap; what the graph's TopK returns. False when the row holds NaN or is
    /// shorter than the request.
    /// </summary>
    public static bool LargestK(ReadOnlySpan<float> logits, Span<float> values, Span<int> ids)
    {
        int k = values.Length;
        if (k == 0 || k > logits.Length) return false;
        TopKHeap.Select(logits, values, ids);
        return !float.IsNaN(values[0]); // NaN ranks first, so any NaN in the row is at the top
    }

    /// <summary>
    /// Index of the largest logit; ties go to the lowest id, NaNs are skipped (an all-NaN row gives the last id). Greedy
    /// decoding calls it on the whole vocabulary every step, so it is vectorized: a scalar loop over 32000 logits took
    /// ~40 µs, long enough for the runtime's pool workers to go to sleep before the next step.
    /// </summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int n = logits.Length;
        if (n == 0) return 0;
        if (!Vector256.IsHardwareAccelerated || n < 2 * Vector256<float>.Count) return ArgMaxScalar(logits);
        ref float x = ref MemoryMarshal.GetReference(logits);
        // Pass 1: the largest non-NaN value (a NaN never compares greater, so it is never selected).
        var best = Vector256.Create(float.NegativeInfinity);
        int i = 0, w = Vector256<float>.Count;
        for (; i <= n - w; i += w)
        {
            var v = Vector256.LoadUnsafe(ref x, (nuint)i);
            best = Vector256.ConditionalSelect(Vector256.GreaterThan(v, best), v, best);
        }
        float m = float.NegativeInfinity;
        for (int l = 0; l < w; l++) if (best[l] > m) m = best[l];
        for (; i < n; i++) if (logits[i] > m) m = logits[i];
        // Pass 2: its first index.
        var mv = Vector256.Create(m);
        for (i = 0; i <= n - w; i += w)
        {
            uint bits = Vector256.Equals(Vector256.LoadUnsafe(ref x, (nuint)i), mv).ExtractMostSignificantBits();
            if (bits != 0) return i + BitOperations.TrailingZeroCount(bits);
        }
        for (; i < n; i++) if (logits[i] == m) return i;
        return n - 1; // all NaN
    }

    // The reference semantics: strict >, so the first of equal maxima wins; a NaN so far is replaced by the next value.
    internal static int ArgMaxScalar(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float bv = logits.Length > 0 ? logits[0] : float.NaN;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > bv || float.IsNaN(bv)) { bv = logits[i]; best = i; }
        return best;
    }

    /// <summary>Draws one id from softmax(<paramref name="logits"/>); masked (-inf) ids are never drawn.</summary>
    public static int Sample(ReadOnlySpan<float> logits, ref Xoshiro256 rng)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++) if (logits[i] > max) max = logits[i];
        // all masked, NaN, or a temperature so small that the top logits overflowed: the limit of sampling is the argmax
        if (!float.IsFinite(max)) return ArgMax(logits);
        double z = 0;
        for (int i = 0; i < logits.Length; i++) if (logits[i] > float.NegativeInfinity) z += Math.Exp(logits[i] - max);
        var u = rng.NextDouble() * z;
        double cum = 0;
        int last = -1;
        for (int i = 0; i < logits.Length; i++)
        {
            if (!(logits[i] > float.NegativeInfinity)) continue;
            var w = Math.Exp(logits[i] - max);
            if (w == 0) continue;
            cum += w;
            last = i;
            if (u < cum) return i;
        }
        return last >= 0 ? last : ArgMax(logits);
    }

    /// <summary>Log-softmax in place (beam search scores).</summary>
    public static void LogSoftmax(Span<float> logits)
    {
        float max = float.NegativeInfinity;
        foreach (var l in logits) if (l > max) max = l;
        double z = 0;
        foreach (var l in logits) if (l > float.NegativeInfinity) z += Math.Exp(l - max);
        var logZ = (float)(Math.Log(z) + max);
        for (int i = 0; i < logits.Length; i++) logits[i] -= logZ;
    }

    // Fills idx[0..n) with the unmasked ids sorted by descending logit (ties by id) and prob[0..n) with their softmax.
    private static int SortedProbabilities(ReadOnlySpan<float> logits, Span<int> idx, Span<float> prob)
    {
        int n = 0;
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
            if (logits[i] > float.NegativeInfinity) { idx[n] = i; prob[n] = -logits[i]; n++; if (logits[i] > max) max = logits[i]; }
        if (n == 0) return 0;
        prob[..n].Sort(idx[..n]);
        // Sort is unstable: restore ascending ids within runs of equal logits so that results never depend on it.
        for (int s = 0; s < n;)
        {
            int e = s + 1;
            while (e < n && prob[e] == prob[s]) e++;
            if (e - s > 1) idx[s..e].Sort();
            s = e;
        }
        double z = 0;
        for (int r = 0; r < n; r++) { var w = Math.Exp(-prob[r] - max); prob[r] = (float)w; z += w; }
        var inv = 1 / z;
        for (int r = 0; r < n; r++) prob[r] = (float)(prob[r] * inv);
        return n;
    }

    // Hoare quickselect: the element that would be at index k in ascending order. Reorders a.
    private static float QuickSelect(Span<float> a, int k)
    {
        int lo = 0, hi = a.Length - 1;
        while (lo < hi)
        {
            var pivot = a[lo + (hi - lo) / 2];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (k <= j) hi = j;
            else if (k >= i) lo = i;
            else return a[k];
        }
        return a[k];
    }
}

/// <summary>
/// xoshiro256** (Blackman &amp; Vigna), seeded through SplitMix64: a small, fast generator whose sequence is fixed by the
/// seed on every platform and .NET version, so that a seed reproduces the same text.
/// </summary>
public struct Xoshiro256
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Seeds the generator.</summary>
    public Xoshiro256(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}

/// <summary>
/// The processors and warpers a <see cref="GenerationConfig"/> asks for, with their scratch buffers allocated once, so
/// that choosing a token allocates nothing. One instance per generation (not thread-safe).
/// </summary>
public sealed class LogitsPipeline
{
    private readonly GenerationConfig _cfg;
    private readonly int[] _eos;
    private readonly float[] _row;
    private readonly float[] _scratchF;
    private readonly int[] _scratchI;
    private readonly int[] _counts;
    private readonly bool[] _seen;
    private readonly int _minKeep;
    private float[] _topValues = [];
    private int[] _topIds = [];

    /// <summary>Builds the pipeline for <paramref name="vocabSize"/>-wide rows; <paramref name="eosIds"/> are masked by min_new_tokens.</summary>
    public LogitsPipeline(GenerationConfig config, int vocabSize, IReadOnlyList<int> eosIds, int minTokensToKeep = 1)
    {
        _cfg = config;
        _eos = eosIds.ToArray();
        _minKeep = minTokensToKeep;
        _row = new float[vocabSize];
        _scratchF = new float[vocabSize];
        _scratchI = new int[vocabSize];
        _counts = new int[vocabSize];
        _seen = new bool[vocabSize];
        HasProcessors = config.RepetitionPenalty != 1f || config.NoRepeatNgramSize > 0 || config.BadWordsIds is { Length: > 0 }
                        || (config.MinNewTokens > 0 && _eos.Length > 0) || config.PresencePenalty != 0f || config.FrequencyPenalty != 0f;
    }

    /// <summary>Whether any logits processor (steps 1–5) is active; without one, greedy reads the model's row directly.</summary>
    public bool HasProcessors { get; }

    /// <summary>Applies processors 1–5 in place. <paramref name="history"/> is prompt + output, its last
    /// <paramref name="generated"/> ids the output.</summary>
    public void Process(Span<float> logits, ReadOnlySpan<int> history, int generated)
    {
        LogitsProcessors.RepetitionPenalty(logits, history, _cfg.RepetitionPenalty, _seen);
        if (_cfg.NoRepeatNgramSize > 0) LogitsProcessors.NoRepeatNgram(logits, history, _cfg.NoRepeatNgramSize);
        if (_cfg.BadWordsIds is { Length: > 0 } bw) LogitsProcessors.BadWords(logits, history, bw);
        LogitsProcessors.MinNewTokens(logits, generated, _cfg.MinNewTokens, _eos);
        LogitsProcessors.PresenceFrequency(logits, history[(history.Length - generated)..], _cfg.PresencePenalty, _cfg.FrequencyPenalty, _counts);
    }

    /// <summary>Applies warpers 6–10 in place (sampling only).</summary>
    public void Warp(Span<float> logits)
    {
        LogitsProcessors.Temperature(logits, _cfg.Temperature);
        if (_cfg.TopK > 0) LogitsProcessors.TopK(logits, _cfg.TopK, _minKeep, _scratchF);
        LogitsProcessors.TopP(logits, _cfg.TopP, _minKeep, _scratchI, _scratchF);
        if (_cfg.MinP is { } mp) LogitsProcessors.MinP(logits, mp, _minKeep, _scratchI, _scratchF);
        LogitsProcessors.Typical(logits, _cfg.TypicalP, _minKeep, _scratchI, _scratchF);
    }

    /// <summary>
    /// Whether a row's next token can be chosen from its <paramref name="candidates"/> largest logits alone (the graph's
    /// TopK output): no processor reads the whole row, and either greedy or sampling with 0 &lt; top_k &lt; candidates
    /// (one spare candidate detects a tie at the top-k boundary, where the full row is needed).
    /// </summary>
    public bool CanUseTopK(int candidates) =>
        candidates > 0 && !HasProcessors
        && (!_cfg.DoSample || (_cfg.TopK > 0 && Math.Max(_cfg.TopK, _minKeep) < candidates && 2 * Math.Max(_cfg.TopK, _minKeep) + 1 <= _row.Length));

    /// <summary>
    /// <see cref="Next"/> from the largest logits of a row (descending, ties to the lowest id) when <see cref="CanUseTopK"/>:
    /// the same id as the full row gives, with the same draws from <paramref name="rng"/>. Returns false, drawing nothing,
    /// when the candidates cannot decide (a tie at the top-k boundary, NaN or -inf among them): use the full row then.
    /// </summary>
    public bool TryNextFromTopK(ReadOnlySpan<float> values, ReadOnlySpan<int> ids, ref Xoshiro256 rng, out int token)
    {
        token = -1;
        if (values.Length == 0 || float.IsNaN(values[0])) return false;
        if (!_cfg.DoSample) { token = ids[0]; return true; }
        int k = Math.Max(_cfg.TopK, _minKeep);
        if (k >= values.Length || !(values[k - 1] > float.NegativeInfinity) || float.IsNaN(values[k])) return false;
        // The full row applies the temperature first and keeps every logit >= the k-th: the same k tokens unless the k-th
        // and the (k+1)-th are equal after scaling.
        var scaled = _scratchF.AsSpan(0, k + 1);
        values[..(k + 1)].CopyTo(scaled);
        LogitsProcessors.Temperature(scaled, _cfg.Temperature);
        if (!(scaled[k - 1] > scaled[k])) return false;
        // The remaining warpers and the draw walk the kept tokens in id order, as on the full row.
        var order = _scratchI.AsSpan(0, k);
        ids[..k].CopyTo(order);
        var row = _row.AsSpan(0, k);
        scaled[..k].CopyTo(row);
        order.Sort(row);
        var idx = _scratchI.AsSpan(k, k);
        var tmp = _scratchF.AsSpan(k + 1, k);
        LogitsProcessors.TopP(row, _cfg.TopP, _minKeep, idx, tmp);
        if (_cfg.MinP is { } mp) LogitsProcessors.MinP(row, mp, _minKeep, idx, tmp);
        LogitsProcessors.Typical(row, _cfg.TypicalP, _minKeep, idx, tmp);
        token = order[LogitsProcessors.Sample(row, ref rng)];
        return true;
    }

    /// <summary>Chooses the next token of one row: processors, then argmax (greedy) or warpers + a draw from <paramref name="rng"/>.</summary>
    public int Next(ReadOnlySpan<float> modelRow, ReadOnlySpan<int> history, int generated, ref Xoshiro256 rng)
    {
        if (!_cfg.DoSample && !HasProcessors) return LogitsProcessors.ArgMax(modelRow);
        // Top-k sampling without processors: one pass selects the k + 1 largest logits and the warpers run on those k
        // (same ids and draws as the full row; the spare candidate detects a tie at the boundary, which falls through).
        if (CanUseTopK(modelRow.Length))
        {
            int want = Math.Max(_cfg.TopK, _minKeep) + 1;
            if (_topValues.Length < want) { _topValues = new float[want]; _topIds = new int[want]; }
            if (LogitsProcessors.LargestK(modelRow, _topValues.AsSpan(0, want), _topIds.AsSpan(0, want))
                && TryNextFromTopK(_topValues.AsSpan(0, want), _topIds.AsSpan(0, want), ref rng, out var fast))
                return fast;
        }
        var row = _row.AsSpan();
        modelRow.CopyTo(row);
        Process(row, history, generated);
        if (!_cfg.DoSample) return LogitsProcessors.ArgMax(row);
        Warp(row);
        return LogitsProcessors.Sample(row, ref rng);
    }
}
