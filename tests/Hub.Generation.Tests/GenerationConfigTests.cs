using Hub.Generation;

namespace Hub.Generation.Tests;

public class GenerationConfigTests
{
    [Fact]
    public void Defaults_follow_transformers()
    {
        var c = new GenerationConfig();
        Assert.Null(c.MaxNewTokens);
        Assert.Equal(20, c.MaxLength);
        Assert.False(c.DoSample);
        Assert.Equal(1f, c.Temperature);
        Assert.Equal(50, c.TopK);
        Assert.Equal(1f, c.TopP);
        Assert.Null(c.MinP);
        Assert.Equal(1f, c.TypicalP);
        Assert.Equal(1f, c.RepetitionPenalty);
        Assert.Equal(1, c.NumBeams);
        Assert.Equal(1f, c.LengthPenalty);
        Assert.Equal(EarlyStoppingMode.Heuristic, c.EarlyStopping);
        Assert.Equal(1, c.NumReturnSequences);
    }

    [Fact]
    public void FromFile_reads_hf_names_int_or_list_eos_and_ignores_unknown_fields()
    {
        var dir = Directory.CreateTempSubdirectory("hubgen");
        try
        {
            var p = Path.Combine(dir.FullName, "generation_config.json");
            File.WriteAllText(p, """
                {"_from_model_config": true, "bos_token_id": 1, "eos_token_id": [2, 32000], "pad_token_id": 0,
                 "do_sample": true, "temperature": 0.6, "top_p": 0.9, "max_length": 4096, "transformers_version": "4.38.0",
                 "early_stopping": "never", "stop_strings": "###", "some_future_field": {"x": 1}}
                """);
            var c = GenerationConfig.FromFile(p);
            Assert.Equal(new[] { 2, 32000 }, c.EosTokenId);
            Assert.Equal(0, c.PadTokenId);
            Assert.True(c.DoSample);
            Assert.Equal(0.6f, c.Temperature);
            Assert.Equal(0.9f, c.TopP);
            Assert.Equal(4096, c.MaxLength);
            Assert.Equal(EarlyStoppingMode.Never, c.EarlyStopping);
            Assert.Equal(new[] { "###" }, c.StopStrings);
            Assert.Equal(50, c.TopK);

            File.WriteAllText(p, """{"eos_token_id": 2, "early_stopping": true}""");
            var d = GenerationConfig.FromFile(p);
            Assert.Equal(new[] { 2 }, d.EosTokenId);
            Assert.Equal(EarlyStoppingMode.True, d.EarlyStopping);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Bad_value_in_file_throws_naming_file_and_field()
    {
        var ex = Assert.Throws<ConfigException>(() => GenerationConfig.Parse("""{"top_k": "many"}""", "/m/generation_config.json"));
        Assert.Contains("/m/generation_config.json", ex.Message);
        Assert.Equal("top_k", ex.Field);
    }

    [Fact]
    public void Missing_file_throws_with_path()
    {
        var ex = Assert.Throws<ModelFileNotFoundException>(() => GenerationConfig.FromFile("/nonexistent/generation_config.json"));
        Assert.Contains("/nonexistent/generation_config.json", ex.Message);
    }

    [Fact]
    public void Merge_only_overrides_fields_the_caller_set()
    {
        var model = GenerationConfig.Parse("""{"temperature": 0.6, "top_p": 0.9, "eos_token_id": [2, 7], "max_length": 100}""");
        var call = new GenerationConfig { MaxNewTokens = 5, TopP = 0.5f };
        var merged = model.Merge(call);
        Assert.Equal(5, merged.MaxNewTokens);
        Assert.Equal(0.5f, merged.TopP);
        Assert.Equal(0.6f, merged.Temperature);
        Assert.Equal(new[] { 2, 7 }, merged.EosTokenId);
        Assert.Equal(100, merged.MaxLength);
        // a default value set explicitly still wins
        var back = model.Merge(new GenerationConfig { Temperature = 1f });
        Assert.Equal(1f, back.Temperature);
        // inputs unchanged
        Assert.Equal(0.9f, model.TopP);
        Assert.Null(model.MaxNewTokens);
    }

    [Theory]
    [InlineData("num_return_sequences")]
    [InlineData("temperature")]
    [InlineData("top_p")]
    [InlineData("num_beams")]
    [InlineData("min_p")]
    [InlineData("typical_p")]
    [InlineData("repetition_penalty")]
    [InlineData("max_new_tokens")]
    [InlineData("top_k")]
    public void Validate_rejects_invalid_settings_naming_the_field(string field)
    {
        var c = field switch
        {
            "num_return_sequences" => new GenerationConfig { NumReturnSequences = 3, NumBeams = 2 },
            "temperature" => new GenerationConfig { DoSample = true, Temperature = 0f },
            "top_p" => new GenerationConfig { TopP = 1.5f },
            "num_beams" => new GenerationConfig { NumBeams = 0 },
            "min_p" => new GenerationConfig { MinP = -0.1f },
            "typical_p" => new GenerationConfig { TypicalP = 0f },
            "repetition_penalty" => new GenerationConfig { RepetitionPenalty = 0f },
            "max_new_tokens" => new GenerationConfig { MaxNewTokens = 0 },
            _ => new GenerationConfig { TopK = -1 },
        };
        var ex = Assert.Throws<GenerationConfigException>(c.Validate);
        Assert.Contains(field, ex.Fields);
        Assert.Contains(field, ex.Message);
    }

    [Fact]
    public void Validate_accepts_sampling_with_several_return_sequences_and_beams_with_fewer()
    {
        new GenerationConfig { DoSample = true, NumReturnSequences = 4 }.Validate();
        new GenerationConfig { NumBeams = 4, NumReturnSequences = 4 }.Validate();
        new GenerationConfig { DoSample = false, Temperature = 0f }.Validate();
    }

    [Fact]
    public void Prompt_longer_than_max_length_asks_for_max_new_tokens()
    {
        var ex = Assert.Throws<GenerationConfigException>(() => new GenerationConfig().ResolveMaxNewTokens(30));
        Assert.Contains("max_new_tokens", ex.Message);
        Assert.Equal(5, new GenerationConfig().ResolveMaxNewTokens(15));
    }

    [Fact]
    public void Save_writes_only_set_fields_and_reads_back()
    {
        var dir = Directory.CreateTempSubdirectory("hubgen");
        try
        {
            var c = new GenerationConfig { EosTokenId = new[] { 2, 7 }, TopP = 0.8f, EarlyStopping = EarlyStoppingMode.Never, StopStrings = new[] { "###" } };
            var p = Path.Combine(dir.FullName, "generation_config.json");
            c.Save(p);
            var json = File.ReadAllText(p);
            Assert.Contains("\"eos_token_id\"", json);
            Assert.DoesNotContain("top_k", json);
            var back = GenerationConfig.FromFile(p);
            Assert.Equal(new[] { 2, 7 }, back.EosTokenId);
            Assert.Equal(0.8f, back.TopP);
            Assert.Equal(EarlyStoppingMode.Never, back.EarlyStopping);
            Assert.Equal(new[] { "###" }, back.StopStrings);
            Assert.Single(Directory.GetFiles(dir.FullName));
        }
        finally { dir.Delete(true); }
    }
}
