using Hub.Generation;

namespace Hub.Generation.Tests;

public class BeamSearchTests
{
    private const int V = 5;

    private static double[] LogSoftmax(int[] hist)
    {
        var row = new float[V];
        FakeRunner.HashLogits(hist, row);
        var max = row.Max();
        var z = Math.Log(row.Sum(x => Math.Exp(x - max))) + max;
        return row.Select(x => x - z).ToArray();
    }

    // All continuations up to maxNew tokens; with eos, a sequence ends at its first eos.
    private static List<(int[] Seq, double Score)> Exhaustive(int[] prompt, int maxNew, int? eos, double lengthPenalty)
    {
        var results = new List<(int[], double)>();
        void Walk(List<int> seq, double sum)
        {
            var lp = LogSoftmax(prompt.Concat(seq).ToArray());
            for (int t = 0; t < V; t++)
            {
                seq.Add(t);
                var s = sum + lp[t];
                if (t == eos || seq.Count == maxNew) results.Add((seq.ToArray(), s / Math.Pow(seq.Count, lengthPenalty)));
                else Walk(seq, s);
                seq.RemoveAt(seq.Count - 1);
            }
        }
        Walk(new List<int>(), 0);
        return results.OrderByDescending(r => r.Item2).ToList();
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Wide_beam_equals_exhaustive_search_and_never_reruns_the_prompt(int steps)
    {
        var prompt = new[] { 1, 2 };
        int k = (int)Math.Pow(V, steps - 1); // wide enough to keep every prefix: beam search becomes exact
        var model = new FakeRunner(V);
        var r = Generator.Generate(model, new[] { prompt }, new GenerationConfig { NumBeams = k, MaxNewTokens = steps, NumReturnSequences = 3 });
        var truth = Exhaustive(prompt, steps, null, 1.0);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(truth[i].Seq, r.Sequences[i]);
            Assert.Equal(truth[i].Score, r.Scores![i], 4);
            Assert.Equal(FinishReason.Length, r.FinishReasons[i]);
        }
        // prompt prefilled once (batch 1), then one token per beam per step; the cache follows the beams
        Assert.Equal(steps, model.ForwardCalls);
        Assert.Equal(prompt.Length + k * (steps - 1), model.TokensFed);
        Assert.Equal(new[] { prompt.Length }.Concat(Enumerable.Repeat(1, steps - 1)), model.SeqLens);
        Assert.Equal(steps - 1, model.ReorderCalls);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(2.0)]
    public void With_eos_and_length_penalty_never_early_stopping_finds_the_exhaustive_best(double lengthPenalty)
    {
        var prompt = new[] { 3, 1, 4 };
        for (int eos = 0; eos < V; eos++)
        {
            var truth = Exhaustive(prompt, 3, eos, lengthPenalty);
            var r = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig
            {
                NumBeams = 25, MaxNewTokens = 3, EosTokenId = new[] { eos }, LengthPenalty = (float)lengthPenalty,
                EarlyStopping = EarlyStoppingMode.Never,
            });
            Assert.Equal(truth[0].Seq, r.Sequences[0]);
            Assert.Equal(truth[0].Score, r.Scores![0], 4);
            Assert.Equal(truth[0].Seq[^1] == eos ? FinishReason.Eos : FinishReason.Length, r.FinishReasons[0]);
        }
    }

    [Fact]
    public void One_beam_equals_greedy()
    {
        var prompt = new[] { 2, 2, 0 };
        var greedy = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { MaxNewTokens = 8 }).Sequences[0];
        var cfg = new GenerationConfig { MaxNewTokens = 8, NumBeams = 1 };
        var beam = BeamSearch.Run(new FakeRunner(V), new[] { prompt }, cfg, null, default);
        Assert.Equal(greedy, beam.Sequences[0]);
        // and with an eos that greedy hits midway
        cfg.EosTokenId = new[] { greedy[3] };
        var g2 = Generator.Generate(new FakeRunner(V), new[] { prompt }, cfg).Sequences[0];
        var b2 = BeamSearch.Run(new FakeRunner(V), new[] { prompt }, cfg, null, default);
        Assert.Equal(g2, b2.Sequences[0]);
        Assert.Equal(FinishReason.Eos, b2.FinishReasons[0]);
    }

    [Fact]
    public void Several_prompts_each_get_their_own_beams()
    {
        var prompts = new[] { new[] { 1 }, new[] { 4, 3, 2 } };
        var cfg = new GenerationConfig { NumBeams = 3, MaxNewTokens = 4, NumReturnSequences = 2 };
        var both = Generator.Generate(new FakeRunner(V), prompts, cfg);
        Assert.Equal(4, both.Sequences.Count);
        var second = Generator.Generate(new FakeRunner(V), new[] { prompts[1] }, cfg);
        Assert.Equal(second.Sequences[0], both.Sequences[2]);
        Assert.Equal(second.Sequences[1], both.Sequences[3]);
        Assert.True(both.Scores![2] >= both.Scores[3]);
    }

    [Theory]
    [InlineData(EarlyStoppingMode.Heuristic)]
    [InlineData(EarlyStoppingMode.True)]
    [InlineData(EarlyStoppingMode.Never)]
    public void Batched_prompts_finishing_at_different_steps_equal_their_solo_searches(EarlyStoppingMode early)
    {
        var prompts = new[] { new[] { 1, 2, 3, 4, 0 }, new[] { 4 }, new[] { 2, 2, 1 } };
        for (int eos = 0; eos < V; eos++)
        {
            var cfg = new GenerationConfig { NumBeams = 3, MaxNewTokens = 6, NumReturnSequences = 2, EosTokenId = new[] { eos }, EarlyStopping = early, LengthPenalty = 0.7f };
            var model = new FakeRunner(V);
            var batch = Generator.Generate(model, prompts, cfg);
            Assert.Equal(6, batch.Sequences.Count);
            for (int p = 0; p < prompts.Length; p++)
            {
                var solo = Generator.Generate(new FakeRunner(V), new[] { prompts[p] }, cfg);
                for (int i = 0; i < 2; i++)
                {
                    Assert.Equal(solo.Sequences[i], batch.Sequences[p * 2 + i]);
                    Assert.Equal(solo.Scores![i], batch.Scores![p * 2 + i], 5);
                    Assert.Equal(solo.FinishReasons[i], batch.FinishReasons[p * 2 + i]);
                }
            }
            Assert.Equal(5, model.SeqLens[0]); // one padded prefill for all prompts
            Assert.All(model.SeqLens.Skip(1), l => Assert.Equal(1, l));
        }
    }

    [Fact]
    public void Early_stopping_true_stops_once_num_beams_hypotheses_exist()
    {
        var prompt = new[] { 3, 1, 4 };
        // every eos candidate in the top num_beams finishes a hypothesis; with a small vocab they accumulate fast
        var never = new FakeRunner(V);
        Generator.Generate(never, new[] { prompt }, new GenerationConfig { NumBeams = 2, MaxNewTokens = 30, EosTokenId = new[] { 0, 1 }, EarlyStopping = EarlyStoppingMode.Never });
        var eager = new FakeRunner(V);
        var r = Generator.Generate(eager, new[] { prompt }, new GenerationConfig { NumBeams = 2, MaxNewTokens = 30, EosTokenId = new[] { 0, 1 }, EarlyStopping = EarlyStoppingMode.True });
        Assert.True(eager.ForwardCalls <= never.ForwardCalls);
        Assert.Equal(FinishReason.Eos, r.FinishReasons[0]);
    }

    [Fact]
    public void Beam_sampling_is_reproducible_with_a_seed_and_explores_across_seeds()
    {
        var prompt = new[] { 3, 1 };
        GenerationConfig Cfg(ulong seed) => new()
        {
            DoSample = true, NumBeams = 3, NumReturnSequences = 2, MaxNewTokens = 5, Temperature = 2.5f, TopK = 0, Seed = seed,
            EosTokenId = new[] { 4 },
        };
        var a = Generator.Generate(new FakeRunner(V), new[] { prompt }, Cfg(7));
        var b = Generator.Generate(new FakeRunner(V), new[] { prompt }, Cfg(7));
        Assert.Equal(a.Sequences, b.Sequences);
        Assert.Equal(a.Scores, b.Scores);

        var beam = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { NumBeams = 3, NumReturnSequences = 2, MaxNewTokens = 5, EosTokenId = new[] { 4 } });
        var distinct = Enumerable.Range(0, 12)
            .Select(seed => string.Join(",", Generator.Generate(new FakeRunner(V), new[] { prompt }, Cfg((ulong)seed)).Sequences[0]))
            .Distinct().ToList();
        Assert.True(distinct.Count > 1, "12 seeds gave the same best sequence: nothing is sampled");
        Assert.Contains(distinct, d => d != string.Join(",", beam.Sequences[0]));
    }

    [Theory]
    [InlineData(2, null)]
    [InlineData(3, 4)]
    public void Beam_sampling_as_temperature_goes_to_zero_equals_beam_search(int beams, int? eos)
    {
        var prompt = new[] { 2, 4, 1 };
        int[]? eosIds = eos is { } e ? new[] { e } : null;
        var search = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig { NumBeams = beams, NumReturnSequences = beams, MaxNewTokens = 6, EosTokenId = eosIds });
        for (ulong seed = 0; seed < 4; seed++)
        {
            var cold = Generator.Generate(new FakeRunner(V), new[] { prompt }, new GenerationConfig
            {
                DoSample = true, Temperature = 1e-4f, NumBeams = beams, NumReturnSequences = beams, MaxNewTokens = 6, EosTokenId = eosIds, Seed = seed,
            });
            Assert.Equal(search.Sequences, cold.Sequences);
            Assert.Equal(search.FinishReasons, cold.FinishReasons);
        }
    }

    [Fact]
    public void Beam_sampling_returns_at_most_num_beams_sequences()
    {
        var ex = Assert.Throws<GenerationConfigException>(() => new GenerationConfig { DoSample = true, NumBeams = 2, NumReturnSequences = 3 }.Validate());
        Assert.Contains("num_return_sequences", ex.Fields);
        Assert.Contains("num_beams", ex.Fields);
    }
}
