using Hub.Models.ChatGlm;

namespace Hub.Models.Tests;

/// <summary>
/// ChatGLM graphs (exported by Hub from THUDM-layout sharded torch checkpoints) against the fixtures' float32 PyTorch
/// goldens, executed by the reference executor: logits at every real position, greedy ids with a KV cache.
/// </summary>
public sealed class ChatGlmGoldenTests
{
    private const float Tolerance = 1e-4f;

    internal static void AssertLogits(float[][][] golden, float[] actual, int batch, int seq, int vocab, int[] firstReal, string what)
    {
        double worst = 0;
        for (int b = 0; b < batch; b++)
            for (int t = firstReal[b]; t < seq; t++)
                for (int v = 0; v < vocab; v++)
                {
                    float g = golden[b][t][v], a = actual[((long)b * seq + t) * vocab + v];
                    double err = Math.Abs(a - g) / Math.Max(1.0, Math.Abs(g));
                    if (err > worst) worst = err;
                    if (!(err <= Tolerance))
                        Assert.Fail($"{what}: logits[{b}][{t}][{v}] = {a}, golden {g} (error {err:E2} > {Tolerance:E0})");
                }
        Assert.True(worst <= Tolerance, $"{what}: worst error {worst:E2}");
    }

    internal static void RunGoldenCases(ChatGlmFixture fx, Func<IChatGlmStepper> makeStepper)
    {
        var config = fx.Config;
        int cases = 0;
        foreach (var c in fx.Cases())
        {
            var host = new ChatGlmHost(makeStepper(), config);
            int batch = c.Ids.Length, seq = c.Ids[0].Length, vocab = config.VocabSize;
            var logits = host.Prompt(c.Ids);
            Assert.Equal(batch * seq * vocab, logits.Length);

            // the positions Hub computed from the ids equal THUDM's
            var goldenPos = c.Raw.GetProperty("position_ids").EnumerateArray()
                .SelectMany(r => r.ValueKind == System.Text.Json.JsonValueKind.Array && r[0].ValueKind == System.Text.Json.JsonValueKind.Array
                    ? r.EnumerateArray().SelectMany(x => x.EnumerateArray()) : r.EnumerateArray())
                .Select(x => x.GetInt32()).ToArray();
            Assert.Equal(goldenPos, host.LastPositions);

            var firstReal = new int[batch];
            if (c.Raw.TryGetProperty("attention_mask", out var mask))
                firstReal = mask.EnumerateArray().Select(r => r.EnumerateArray().TakeWhile(x => x.GetInt32() == 0).Count()).ToArray();
            AssertLogits(c.Logits, logits, batch, seq, vocab, firstReal, $"{config.Variant} case {cases} ({c.Kind})");

            var greedy = host.Greedy(c.Ids, c.Greedy[0].Length);
            for (int b = 0; b < batch; b++)
                Assert.True(c.Greedy[b].SequenceEqual(greedy[b]),
                    $"{config.Variant} case {cases} ({c.Kind}) row {b}: greedy {string.Join(",", greedy[b])} != golden {string.Join(",", c.Greedy[b])}");
            cases++;
        }
        Assert.True(cases >= 3, $"expected the fixture's cases, ran {cases}");
    }

    /// <summary>
    /// ChatGLM-6B (v1): the fixture's single-row cases left-padded (pad id) into one batch, as THUDM's tokenizer pads them;
    /// every row must give its own golden logits at its real positions and its own golden greedy ids.
    /// </summary>
    internal static void RunLeftPaddedV1Batch(ChatGlmFixture fx, IChatGlmStepper stepper)
    {
        var config = fx.Config;
        var cases = fx.Cases().Where(c => c.Ids.Length == 1).ToArray();
        Assert.True(cases.Length >= 2 && cases.Select(c => c.Ids[0].Length).Distinct().Count() >= 2, "needs single-row cases of different lengths");
        int seq = cases.Max(c => c.Ids[0].Length), batch = cases.Length, vocab = config.VocabSize, pad = config.PadTokenId!.Value;
        var rows = cases.Select(c => Enumerable.Repeat(pad, seq - c.Ids[0].Length).Concat(c.Ids[0]).ToArray()).ToArray();
        var firstReal = cases.Select(c => seq - c.Ids[0].Length).ToArray();
        var golden = cases.Select((c, b) => Enumerable.Repeat(Array.Empty<float>(), firstReal[b]).Concat(c.Logits[0]).ToArray()).ToArray();
        var host = new ChatGlmHost(stepper, config);
        AssertLogits(golden, host.Prompt(rows), batch, seq, vocab, firstReal, "v1 left-padded batch");
        var greedy = host.Greedy(rows, cases[0].Greedy[0].Length);
        for (int b = 0; b < batch; b++)
            Assert.True(cases[b].Greedy[0].SequenceEqual(greedy[b]),
                $"v1 left-padded batch row {b} (padded by {firstReal[b]}): greedy {string.Join(",", greedy[b])} != alone {string.Join(",", cases[b].Greedy[0])}");
    }

    [SkippableFact]
    public void ChatGlm1_reference_graph_gives_each_row_of_a_left_padded_batch_its_golden_logits_and_greedy_ids()
    {
        using var fx = ChatGlmFixture.Open("chatglm1-tiny");
        RunLeftPaddedV1Batch(fx, new ReferenceStepper(fx.Export, 128));
    }

    [SkippableFact]
    public void ChatGlm2_reference_graph_matches_golden_logits_and_greedy_ids_for_every_case_including_left_padded_batch()
    {
        using var fx = ChatGlmFixture.Open("chatglm2-tiny");
        Assert.Equal(ChatGlmVariant.V2, fx.Config.Variant);
        RunGoldenCases(fx, () => new ReferenceStepper(fx.Export, 128));
    }

    [SkippableFact]
    public void ChatGlm1_reference_graph_matches_golden_logits_and_greedy_ids_with_positions_built_from_ids()
    {
        using var fx = ChatGlmFixture.Open("chatglm1-tiny");
        Assert.Equal(ChatGlmVariant.V1, fx.Config.Variant);
        RunGoldenCases(fx, () => new ReferenceStepper(fx.Export, 128));
    }

    [SkippableFact]
    public void ChatGlm2_debug_intermediates_embedding_matches_golden()
    {
        using var fx = ChatGlmFixture.Open("chatglm2-tiny");
        var emb = fx.Export.Weights.Single(w => w.Name == "transformer.embedding.word_embeddings.weight").Tensor.ToFloat32();
        var dbg = fx.Golden.RootElement.GetProperty("debug_case0").GetProperty("embedding_output");
        var ids = fx.Cases().First().Ids[0];
        int hidden = fx.Config.HiddenSize, t = 0;
        foreach (var row in dbg[0].EnumerateArray())
        {
            var values = row.EnumerateArray().Select(x => x.GetSingle()).ToArray();
            for (int i = 0; i < hidden; i++) Assert.Equal(values[i], emb[ids[t] * hidden + i], 6);
            t++;
        }
        Assert.Equal(ids.Length, t);
    }
}
