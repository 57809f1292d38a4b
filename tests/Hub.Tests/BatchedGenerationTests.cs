using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>Batched generation on real models: left padding, attention mask, per-row positions and stopping.</summary>
public class BatchedGenerationTests(ChatModels models) : IClassFixture<ChatModels>
{
    [SkippableTheory]
    [InlineData("models/karpathy/tinyllamas/stories260K")]
    [InlineData("fixtures/gpt2-tiny")]
    public void Three_prompts_of_different_lengths_give_each_row_the_ids_it_gets_alone(string model)
    {
        var lm = models.Get(model);
        int[][] prompts =
        [
            [.. new[] { 1, 2, 3 }.Select(i => i * 31 % lm.VocabSize)],
            [.. Enumerable.Range(5, 9).Select(i => i * 17 % lm.VocabSize)],
            [.. Enumerable.Range(40, 5).Select(i => i * 7 % lm.VocabSize)],
        ];
        var cfg = new GenerationConfig { MaxNewTokens = 12 };
        var batch = Generator.Generate(lm, prompts, cfg);
        Assert.Equal(3, batch.Sequences.Count);
        for (int p = 0; p < 3; p++)
        {
            var alone = Generator.Generate(lm, [prompts[p]], cfg);
            Assert.Equal(alone.Sequences[0], batch.Sequences[p]);
            Assert.Equal(alone.FinishReasons[0], batch.FinishReasons[p]);
        }
    }

    [SkippableFact]
    public void Beam_sampling_on_gpt2_tiny_is_seeded_and_cools_to_beam_search()
    {
        var lm = models.Get("fixtures/gpt2-tiny");
        int[] prompt = [464, 3290, 318];
        GenerationConfig Sample(ulong seed, float t) => new() { MaxNewTokens = 8, NumBeams = 3, NumReturnSequences = 2, DoSample = true, Temperature = t, Seed = seed };
        var a = Generator.Generate(lm, [prompt], Sample(4, 1.5f));
        var b = Generator.Generate(lm, [prompt], Sample(4, 1.5f));
        Assert.Equal(a.Sequences, b.Sequences);
        var search = Generator.Generate(lm, [prompt], new GenerationConfig { MaxNewTokens = 8, NumBeams = 3, NumReturnSequences = 2 });
        var cold = Generator.Generate(lm, [prompt], Sample(4, 1e-4f));
        Assert.Equal(search.Sequences, cold.Sequences);
    }

    [SkippableFact]
    public void Beam_search_through_the_static_generator_grows_a_fresh_models_batch_capacity()
    {
        // A freshly loaded model is compiled for one row; beams are created by ReorderCache after a one-row prefill, so
        // the generator must reserve the rows first (this failed when no earlier test had grown the batch).
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var tmp = SharedDir.TempDir("hub-beam-fresh");
        try
        {
            using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = tmp, MaxBatch = 1 });
            var result = Generator.Generate(lm, [[464, 3290, 318]], new GenerationConfig { MaxNewTokens = 4, NumBeams = 3, NumReturnSequences = 2 });
            Assert.Equal(2, result.Sequences.Count);
            Assert.All(result.Sequences, s => Assert.Equal(4, s.Length));
        }
        finally { try { Directory.Delete(tmp, true); } catch (IOException) { } }
    }
}
