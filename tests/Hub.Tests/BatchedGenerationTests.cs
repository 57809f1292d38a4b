using Hub.Generation;

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
}
