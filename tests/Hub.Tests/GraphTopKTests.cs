using Hub.Generation;

namespace Hub.Integration.Tests;

/// <summary>TopK appended to the graph's logits (<see cref="CausalLM.UseLogitsTopK"/>) changes speed, never the ids.</summary>
public class GraphTopKTests(ChatModels models) : IClassFixture<ChatModels>
{
    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var m in new[] { "models/karpathy/tinyllamas/stories260K", "fixtures/gpt2-tiny" })
            foreach (var c in new[] { "greedy", "top_k", "top_k_top_p_temperature", "repetition_penalty", "top_k_too_large" })
                d.Add(m, c);
        return d;
    }

    private static GenerationConfig Config(string kind) => kind switch
    {
        "greedy" => new GenerationConfig { MaxNewTokens = 24 },
        "top_k" => new GenerationConfig { MaxNewTokens = 24, DoSample = true, TopK = 40, Seed = 11 },
        "top_k_top_p_temperature" => new GenerationConfig { MaxNewTokens = 24, DoSample = true, TopK = 20, TopP = 0.9f, Temperature = 0.7f, Seed = 5 },
        "repetition_penalty" => new GenerationConfig { MaxNewTokens = 24, DoSample = true, TopK = 20, RepetitionPenalty = 1.3f, Seed = 2 }, // needs the full row
        _ => new GenerationConfig { MaxNewTokens = 24, DoSample = true, TopK = 100, Seed = 3 }, // more than the graph returns
    };

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Ids_are_equal_with_and_without_topk_on_the_graph(string model, string kind)
    {
        var lm = models.Get(model);
        var prompt = new[] { 1, 7, 42, 100 }.Select(i => i % lm.VocabSize).ToArray();
        lm.UseLogitsTopK(0);
        var without = Generator.Generate(lm, [prompt], Config(kind)).Sequences[0];
        lm.UseLogitsTopK(64);
        Assert.Equal(64, lm.LogitsTopK);
        var with = Generator.Generate(lm, [prompt], Config(kind)).Sequences[0];
        // the graph's candidates are the row's largest logits
        var row = lm.Logits(prompt)[^1];
        Generator.Generate(lm, [prompt], new GenerationConfig { MaxNewTokens = 1 });
        Assert.Equal(Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(64), lm.TopKIndices.ToArray());
        lm.UseLogitsTopK(0);
        Assert.Equal(without, with);
        Assert.Equal(24, with.Length);
    }

    [SkippableFact]
    public void Topk_candidates_outside_the_vocabulary_are_rejected()
    {
        var lm = models.Get("models/karpathy/tinyllamas/stories260K");
        Assert.Throws<ArgumentOutOfRangeException>(() => lm.UseLogitsTopK(lm.VocabSize + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => lm.UseLogitsTopK(-1));
    }
}
