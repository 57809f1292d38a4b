using Hub.Generation;

namespace Hub.Generation.Tests;

public class GeneratorTests
{
    private const int V = 40;

    private static int[] Solo(int[] prompt, GenerationConfig cfg, int vocab = V) =>
        Generator.Generate(new FakeRunner(vocab), new[] { prompt }, cfg).Sequences[0];

    [Fact]
    public void Greedy_picks_the_argmax_of_the_true_history_each_step()
    {
        var prompt = new[] { 3, 7, 1 };
        var model = new FakeRunner(V);
        var r = Generator.Generate(model, new[] { prompt }, new GenerationConfig { MaxNewTokens = 6 });
        var hist = prompt.ToList();
        var row = new float[V];
        foreach (var t in r.Sequences[0])
        {
            FakeRunner.HashLogits(hist.ToArray(), row);
            Assert.Equal(Array.IndexOf(row, row.Max()), t);
            hist.Add(t);
        }
        Assert.Equal(6, r.Sequences[0].Length);
        Assert.Equal(FinishReason.Length, r.FinishReasons[0]);
        Assert.Equal(1 + 5, model.ForwardCalls); // prefill + one per fed token; the last token is never fed
        Assert.Equal(3 + 5, model.TokensFed);
    }

    [Fact]
    public void Batch_of_prompts_with_different_lengths_equals_generating_each_alone()
    {
        var prompts = new[] { new[] { 5 }, new[] { 1, 2, 3, 4, 5, 6, 7 }, new[] { 9, 8, 7 } };
        foreach (var cfg in new[]
                 {
                     new GenerationConfig { MaxNewTokens = 12 },
                     new GenerationConfig { MaxNewTokens = 12, RepetitionPenalty = 1.3f, NoRepeatNgramSize = 2 },
                 })
        {
            // pick an eos that ends some rows early but not all
            var solo = prompts.Select(p => Solo(p, cfg)).ToArray();
            var eos = solo[1][4];
            cfg.EosTokenId = new[] { eos };
            solo = prompts.Select(p => Solo(p, cfg)).ToArray();
            var model = new FakeRunner(V);
            var batch = Generator.Generate(model, prompts, cfg);
            for (int i = 0; i < 3; i++) Assert.Equal(solo[i], batch.Sequences[i]);
            Assert.Equal(FinishReason.Eos, batch.FinishReasons[1]);
            Assert.Equal(eos, batch.Sequences[1][^1]);
            // left padding: the pad id (first eos) before the shorter prompts
            Assert.Equal(Enumerable.Repeat(eos, 6).Append(5), model.Row(0).Take(7));
            Assert.Equal(Enumerable.Repeat(eos, 4).Concat(prompts[2]), model.Row(2).Take(7));
        }
    }

    [Fact]
    public void Finished_rows_are_fed_the_pad_id_and_their_output_is_frozen()
    {
        var prompts = new[] { new[] { 5, 6 }, new[] { 1, 2, 3 } };
        var cfg = new GenerationConfig { MaxNewTokens = 8, PadTokenId = 39 };
        var s0 = Solo(prompts[0], cfg);
        cfg.EosTokenId = new[] { s0[1] };
        var model = new FakeRunner(V);
        var r = Generator.Generate(model, prompts, cfg);
        Assert.Equal(2, r.Sequences[0].Length);
        var row0 = model.Row(0);
        // left padding of 1, prompt, 2 generated (the eos is fed while row 1 continues), then pads
        Assert.Equal(39, row0[0]);
        Assert.All(row0.Skip(1 + 2 + 2), t => Assert.Equal(39, t));
    }

    [Fact]
    public void Every_id_in_the_eos_list_stops()
    {
        var prompt = new[] { 2, 4, 6 };
        var full = Solo(prompt, new GenerationConfig { MaxNewTokens = 10 });
        var r1 = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { MaxNewTokens = 10, EosTokenId = new[] { 39, full[3] } });
        var r2 = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { MaxNewTokens = 10, EosTokenId = new[] { full[2], 38 } });
        Assert.Equal(full[..4], r1.Sequences[0]);
        Assert.Equal(full[..3], r2.Sequences[0]);
        Assert.Equal(FinishReason.Eos, r1.FinishReasons[0]);
    }

    [Fact]
    public void Min_new_tokens_delays_eos()
    {
        var prompt = new[] { 2, 4, 6 };
        var full = Solo(prompt, new GenerationConfig { MaxNewTokens = 10 });
        var r = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { MaxNewTokens = 10, EosTokenId = new[] { full[0] }, MinNewTokens = 3 });
        Assert.NotEqual(full[0], r.Sequences[0][0]);
        Assert.True(r.Sequences[0].Length >= 3);
    }

    [Fact]
    public void Sampling_with_top_k_1_equals_greedy()
    {
        var prompt = new[] { 1, 2, 3 };
        var greedy = Solo(prompt, new GenerationConfig { MaxNewTokens = 15 });
        for (ulong seed = 0; seed < 5; seed++)
            Assert.Equal(greedy, Solo(prompt, new GenerationConfig { MaxNewTokens = 15, DoSample = true, TopK = 1, Seed = seed }));
    }

    [Fact]
    public void Sampling_with_a_tiny_temperature_equals_greedy()
    {
        var prompt = new[] { 1, 2, 3 };
        var greedy = Solo(prompt, new GenerationConfig { MaxNewTokens = 15 });
        Assert.Equal(greedy, Solo(prompt, new GenerationConfig { MaxNewTokens = 15, DoSample = true, TopK = 0, Temperature = 1e-4f, Seed = 7 }));
        Assert.Equal(greedy, Solo(prompt, new GenerationConfig { MaxNewTokens = 15, DoSample = true, Temperature = 1e-30f, Seed = 7 }));
    }

    [Fact]
    public void Same_seed_gives_the_same_sequence_and_other_seeds_differ()
    {
        var prompt = new[] { 1, 2, 3 };
        GenerationConfig Cfg(ulong s) => new() { MaxNewTokens = 20, DoSample = true, TopK = 0, Temperature = 2f, Seed = s };
        var a = Solo(prompt, Cfg(11));
        Assert.Equal(a, Solo(prompt, Cfg(11)));
        Assert.Contains(Enumerable.Range(12, 4), s => !Solo(prompt, Cfg((ulong)s)).SequenceEqual(a));
        Assert.NotEqual(Solo(prompt, new GenerationConfig { MaxNewTokens = 20 }), a);
    }

    [Fact]
    public void Num_return_sequences_with_sampling_returns_that_many_per_prompt()
    {
        var r = Generator.Generate(new FakeRunner(V), new[] { new[] { 1 }, new[] { 2, 3 } },
            new GenerationConfig { MaxNewTokens = 5, DoSample = true, NumReturnSequences = 3, Seed = 1, TopK = 0, Temperature = 3f });
        Assert.Equal(6, r.Sequences.Count);
        Assert.Equal(3, r.SequencesPerPrompt);
    }

    [Fact]
    public void Cancellation_stops_with_cancelled_reason()
    {
        using var cts = new CancellationTokenSource();
        int n = 0;
        var hooks = new GenerationHooks { OnToken = (_, _) => { if (++n == 3) cts.Cancel(); } };
        var r = Generator.Generate(new FakeRunner(V), new[] { new[] { 1, 2 } }, new GenerationConfig { MaxNewTokens = 50 }, hooks, cts.Token);
        Assert.Equal(3, r.Sequences[0].Length);
        Assert.Equal(FinishReason.Cancelled, r.FinishReasons[0]);
    }

    [Fact]
    public void Generation_stops_at_the_model_context()
    {
        var model = new FakeRunner(V, maxContext: 10);
        var r = Generator.Generate(model, new[] { new[] { 1, 2, 3, 4 } }, new GenerationConfig { MaxNewTokens = 50 });
        Assert.Equal(6, r.Sequences[0].Length);
        Assert.Equal(FinishReason.Length, r.FinishReasons[0]);
    }

    [Fact]
    public void Bad_prompts_throw_model_input_errors()
    {
        var m = new FakeRunner(V, maxContext: 8);
        Assert.Throws<ModelInputException>(() => Generator.Generate(m, new[] { Array.Empty<int>() }, new GenerationConfig()));
        var ex = Assert.Throws<ModelInputException>(() => Generator.Generate(m, new[] { new[] { 1, 99 } }, new GenerationConfig()));
        Assert.Contains("99", ex.Message);
        Assert.Throws<ModelInputException>(() => Generator.Generate(m, new[] { new int[9] }, new GenerationConfig { MaxNewTokens = 1 }));
        Assert.Throws<ModelInputException>(() => Generator.Generate(m, Array.Empty<int[]>(), new GenerationConfig()));
        var pad = Assert.Throws<GenerationConfigException>(() => Generator.Generate(m, new[] { new[] { 1 } }, new GenerationConfig { MaxNewTokens = 2, PadTokenId = 500 }));
        Assert.Contains("pad_token_id", pad.Fields);
    }

    [Fact]
    public void Decode_loop_does_not_allocate_per_token_greedy_or_sampling()
    {
        foreach (var cfg in new[] { new GenerationConfig { MaxNewTokens = 30 }, new GenerationConfig { MaxNewTokens = 30, RepetitionPenalty = 1.2f, NoRepeatNgramSize = 3 },
                     new GenerationConfig { MaxNewTokens = 30, DoSample = true, Seed = 3, Temperature = 0.7f, TopK = 20, TopP = 0.9f, MinP = 0.01f, TypicalP = 0.95f, PresencePenalty = 0.1f } })
        {
            var model = new FakeRunner(V);
            var marks = new List<long>(64);
            // between two tokens the loop runs the processors, argmax and one Forward; the fake's own allocations are subtracted
            var hooks = new GenerationHooks { OnToken = (_, _) => marks.Add(GC.GetAllocatedBytesForCurrentThread() - model.AllocatedInForward) };
            Generator.Generate(model, new[] { new[] { 1, 2, 3 } }, cfg, hooks);
            Assert.Equal(30, marks.Count);
            var deltas = marks.Zip(marks.Skip(1), (a, b) => b - a).Skip(1).ToArray();
            Assert.All(deltas, d => Assert.Equal(0, d));
        }
    }
}
