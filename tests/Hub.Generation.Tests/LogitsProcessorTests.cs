using Hub.Generation;

namespace Hub.Generation.Tests;

public class LogitsProcessorTests
{
    private static float[] Probs(float[] logits)
    {
        var max = logits.Max();
        var e = logits.Select(l => float.IsNegativeInfinity(l) ? 0 : Math.Exp(l - max)).ToArray();
        var z = e.Sum();
        return e.Select(x => (float)(x / z)).ToArray();
    }

    private static float[] FromProbs(params double[] p) => p.Select(x => (float)Math.Log(x)).ToArray();
    private static bool[] Kept(float[] l) => l.Select(x => !float.IsNegativeInfinity(x)).ToArray();

    [Fact]
    public void TopP_keeps_the_smallest_set_reaching_p()
    {
        // probs 0.5, 0.2, 0.15, 0.1, 0.05 (shuffled ids)
        var logits = FromProbs(0.1, 0.5, 0.05, 0.2, 0.15);
        var idx = new int[5]; var f = new float[5];
        var a = (float[])logits.Clone();
        LogitsProcessors.TopP(a, 0.7f, 1, idx, f);       // 0.5 + 0.2 = 0.7 reaches p exactly: two tokens
        Assert.Equal(new[] { false, true, false, true, false }, Kept(a));
        var b = (float[])logits.Clone();
        LogitsProcessors.TopP(b, 0.71f, 1, idx, f);      // needs a third token
        Assert.Equal(new[] { false, true, false, true, true }, Kept(b));
        var c = (float[])logits.Clone();
        LogitsProcessors.TopP(c, 0.3f, 1, idx, f);       // the top token alone is over p
        Assert.Equal(new[] { false, true, false, false, false }, Kept(c));
        var d = (float[])logits.Clone();
        LogitsProcessors.TopP(d, 0.3f, 3, idx, f);       // min_tokens_to_keep
        Assert.Equal(3, Kept(d).Count(k => k));
        // kept logits are untouched
        Assert.Equal(logits[1], c[1]);
    }

    [Fact]
    public void TopK_keeps_k_largest_and_ties_at_the_boundary()
    {
        var l = new float[] { 1, 5, 3, 5, 2, 4 };
        var s = new float[6];
        var a = (float[])l.Clone();
        LogitsProcessors.TopK(a, 3, 1, s);
        Assert.Equal(new[] { false, true, false, true, false, true }, Kept(a));
        var b = (float[])l.Clone();
        LogitsProcessors.TopK(b, 1, 1, s); // two tokens tie for first place: both kept
        Assert.Equal(new[] { false, true, false, true, false, false }, Kept(b));
        var c = (float[])l.Clone();
        LogitsProcessors.TopK(c, 10, 1, s);
        Assert.Equal(l, c);
    }

    [Fact]
    public void MinP_drops_tokens_below_min_p_times_the_top_probability()
    {
        var l = FromProbs(0.5, 0.3, 0.12, 0.08);
        var a = (float[])l.Clone();
        LogitsProcessors.MinP(a, 0.2f, 1, new int[4], new float[4]); // threshold 0.1
        Assert.Equal(new[] { true, true, true, false }, Kept(a));
        var b = (float[])l.Clone();
        LogitsProcessors.MinP(b, 0.9f, 2, new int[4], new float[4]); // keeps at least two
        Assert.Equal(new[] { true, true, false, false }, Kept(b));
    }

    [Fact]
    public void Typical_keeps_tokens_closest_to_the_entropy_until_mass()
    {
        // probs 0.4, 0.3, 0.2, 0.1: H = 1.2799; |-ln p - H| = 0.364, 0.076, 0.330, 1.023
        // order by that: ids 1 (0.3), 2 (0.2), 0 (0.4), 3 (0.1). mass 0.45: cum 0.3 < 0.45, 0.5 is not → last index 1
        var l = FromProbs(0.4, 0.3, 0.2, 0.1);
        var a = (float[])l.Clone();
        LogitsProcessors.Typical(a, 0.45f, 1, new int[4], new float[4]);
        Assert.Equal(new[] { false, true, true, false }, Kept(a));
        var b = (float[])l.Clone();
        LogitsProcessors.Typical(b, 0.2f, 1, new int[4], new float[4]); // cum 0.3 ≥ 0.2 at once: only id 1
        Assert.Equal(new[] { false, true, false, false }, Kept(b));
    }

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_once_per_token()
    {
        var l = new float[] { 2, -2, 4, 1 };
        var seen = new bool[4];
        LogitsProcessors.RepetitionPenalty(l, new[] { 0, 1, 0, 0 }, 2f, seen);
        Assert.Equal(new float[] { 1, -4, 4, 1 }, l);
        Assert.All(seen, s => Assert.False(s));
    }

    [Fact]
    public void Presence_and_frequency_penalties_count_generated_tokens()
    {
        var l = new float[] { 0, 0, 0, 0 };
        var counts = new int[4];
        LogitsProcessors.PresenceFrequency(l, new[] { 2, 2, 2, 1 }, 0.5f, 0.25f, counts);
        Assert.Equal(new float[] { 0, -0.75f, -1.25f, 0 }, l);
        Assert.All(counts, c => Assert.Equal(0, c));
    }

    [Fact]
    public void No_repeat_ngram_bans_completing_a_seen_ngram()
    {
        var l = new float[6];
        // history 1 2 3 1 2 : bigram prefix (2) was followed by 3 → ban 3 for n=2; trigram prefix (1 2) → ban 3 for n=3
        LogitsProcessors.NoRepeatNgram(l, new[] { 1, 2, 3, 1, 2 }, 3);
        Assert.Equal(new[] { true, true, true, false, true, true }, Kept(l));
        var m = new float[6];
        LogitsProcessors.NoRepeatNgram(m, new[] { 1, 2, 3, 2, 5, 2 }, 2); // 2 was followed by 3 and 5
        Assert.Equal(new[] { true, true, true, false, true, false }, Kept(m));
    }

    [Fact]
    public void Bad_words_ban_single_tokens_and_sequence_completions()
    {
        var l = new float[6];
        LogitsProcessors.BadWords(l, new[] { 4, 1, 2 }, new[] { new[] { 5 }, new[] { 1, 2, 3 }, new[] { 4, 0 } });
        Assert.Equal(new[] { true, true, true, false, true, false }, Kept(l));
    }

    [Fact]
    public void Min_new_tokens_masks_every_eos_id_until_reached()
    {
        var l = new float[5];
        LogitsProcessors.MinNewTokens(l, 1, 2, new[] { 3, 4 });
        Assert.Equal(new[] { true, true, true, false, false }, Kept(l));
        var m = new float[5];
        LogitsProcessors.MinNewTokens(m, 2, 2, new[] { 3, 4 });
        Assert.All(Kept(m), Assert.True);
    }

    [Fact]
    public void Greedy_ties_go_to_the_lowest_id()
    {
        Assert.Equal(1, LogitsProcessors.ArgMax(new float[] { 0, 3, 1, 3 }));
    }

    [Fact]
    public void Vectorized_argmax_matches_the_scalar_loop_on_ties_nans_infinities_and_every_length()
    {
        var rng = new Random(7);
        float[] specials = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, 0f, -0f, 1f, 1f];
        for (int n = 0; n <= 80; n++)
            for (int trial = 0; trial < 40; trial++)
            {
                var row = new float[n];
                int mode = trial % 5;
                for (int i = 0; i < n; i++)
                    row[i] = mode switch
                    {
                        0 => (float)rng.NextDouble(),
                        1 => rng.Next(4),                                        // many ties
                        2 => specials[rng.Next(specials.Length)],                // NaN, ±inf, ±0
                        3 => rng.Next(3) == 0 ? float.NaN : float.NegativeInfinity, // NaN and -inf only
                        _ => float.NaN,                                          // all NaN
                    };
                Assert.True(LogitsProcessors.ArgMaxScalar(row) == LogitsProcessors.ArgMax(row),
                    $"n {n} mode {mode}: [{string.Join(", ", row)}] scalar {LogitsProcessors.ArgMaxScalar(row)} vector {LogitsProcessors.ArgMax(row)}");
            }
        var big = new float[32000];
        for (int i = 0; i < big.Length; i++) big[i] = (float)rng.NextDouble();
        big[31999] = 2f; big[20001] = 2f; big[5] = float.NaN;
        Assert.Equal(20001, LogitsProcessors.ArgMax(big));
    }

    [Fact]
    public void Sampling_follows_the_distribution_and_never_draws_masked_ids()
    {
        var l = FromProbs(0.6, 0.3, 0.1);
        l[2] = float.NegativeInfinity;
        var rng = new Xoshiro256(42);
        var counts = new int[3];
        for (int i = 0; i < 20000; i++) counts[LogitsProcessors.Sample(l, ref rng)]++;
        Assert.Equal(0, counts[2]);
        Assert.InRange(counts[0] / 20000.0, 0.64, 0.69); // 0.6/0.9 = 0.667
    }

    [Fact]
    public void Warpers_run_temperature_then_topk_then_topp()
    {
        // temperature 0.5 sharpens 0.5/0.3/0.2 into 0.66/0.24/0.11, so top_p 0.85 keeps two tokens (without temperature 0.5 + 0.3 = 0.8 < 0.85 needs three)
        var cfg = new GenerationConfig { DoSample = true, Temperature = 0.5f, TopK = 0, TopP = 0.85f };
        var pipe = new LogitsPipeline(cfg, 3, Array.Empty<int>());
        var l = FromProbs(0.5, 0.3, 0.2);
        pipe.Warp(l);
        Assert.Equal(new[] { true, true, false }, Kept(l));
        var p = Probs(l);
        Assert.InRange(p[0], 0.72f, 0.75f);
    }

    // What the full row gives: warpers over the whole vocabulary, then one draw.
    private static int FullRow(GenerationConfig cfg, float[] row, ref Xoshiro256 rng)
    {
        var pipe = new LogitsPipeline(cfg, row.Length, Array.Empty<int>());
        var copy = (float[])row.Clone();
        pipe.Warp(copy);
        return LogitsProcessors.Sample(copy, ref rng);
    }

    [Theory]
    [InlineData(50, 1f, 1f, null, 1f)]
    [InlineData(5, 0.7f, 0.9f, null, 1f)]
    [InlineData(20, 1.3f, 0.8f, 0.05f, 1f)]
    [InlineData(40, 0.9f, 1f, null, 0.7f)]
    [InlineData(1, 1f, 1f, null, 1f)]
    public void Top_k_candidates_give_the_same_ids_and_draws_as_the_full_row(int topK, float temperature, float topP, float? minP, float typical)
    {
        var cfg = new GenerationConfig { DoSample = true, TopK = topK, Temperature = temperature, TopP = topP, MinP = minP, TypicalP = typical };
        var data = new Random(topK);
        for (int trial = 0; trial < 200; trial++)
        {
            var row = new float[1000];
            for (int i = 0; i < row.Length; i++) row[i] = (float)(data.NextDouble() * 8 - 4);
            if (trial % 3 == 0) for (int i = 0; i < 300; i++) row[data.Next(row.Length)] = MathF.Round(row[data.Next(row.Length)]); // many ties
            var pipe = new LogitsPipeline(cfg, row.Length, Array.Empty<int>());
            var fastRng = new Xoshiro256((ulong)trial);
            var fullRng = new Xoshiro256((ulong)trial);
            Assert.Equal(FullRow(cfg, row, ref fullRng), pipe.Next(row, new[] { 1 }, 0, ref fastRng));
            Assert.Equal(fullRng.NextUInt64(), fastRng.NextUInt64()); // the same number of draws
        }
    }

    [Fact]
    public void Top_k_candidates_refuse_a_tie_at_the_boundary_and_greedy_takes_the_first()
    {
        var cfg = new GenerationConfig { DoSample = true, TopK = 2 };
        var pipe = new LogitsPipeline(cfg, 8, Array.Empty<int>());
        var rng = new Xoshiro256(1);
        // 2nd and 3rd largest equal: the full row keeps both, so the candidates cannot decide
        Assert.False(pipe.TryNextFromTopK(new float[] { 5, 3, 3 }, new[] { 4, 1, 6 }, ref rng, out _));
        Assert.True(pipe.TryNextFromTopK(new float[] { 5, 3, 2 }, new[] { 4, 1, 6 }, ref rng, out var t));
        Assert.Contains(t, new[] { 4, 1 });
        Assert.False(pipe.CanUseTopK(2)); // needs a spare candidate
        Assert.True(pipe.CanUseTopK(3));
        Assert.False(new LogitsPipeline(new GenerationConfig { DoSample = true, TopK = 2, RepetitionPenalty = 1.2f }, 8, Array.Empty<int>()).CanUseTopK(64));
        Assert.False(new LogitsPipeline(new GenerationConfig { DoSample = true, TopK = 0 }, 8, Array.Empty<int>()).CanUseTopK(64));
        var greedy = new LogitsPipeline(new GenerationConfig(), 8, Array.Empty<int>());
        Assert.True(greedy.TryNextFromTopK(new float[] { 5, 5 }, new[] { 2, 7 }, ref rng, out var g));
        Assert.Equal(2, g);
    }

    [Fact]
    public void Largest_k_matches_a_full_sort_with_ties_to_the_lowest_id()
    {
        var data = new Random(3);
        for (int trial = 0; trial < 100; trial++)
        {
            var row = Enumerable.Range(0, 300).Select(_ => (float)data.Next(40)).ToArray();
            int k = 1 + data.Next(60);
            var values = new float[k];
            var ids = new int[k];
            Assert.True(LogitsProcessors.LargestK(row, values, ids));
            var expected = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k).ToArray();
            Assert.Equal(expected, ids);
            Assert.Equal(expected.Select(i => row[i]), values);
        }
        Assert.False(LogitsProcessors.LargestK(new[] { 1f, float.NaN, 0f }, new float[2], new int[2]));
    }
}
