using System.Text.Json.Nodes;
using Hub.Models;
using Hub.Models.Llama;
using Hub.Tests;

namespace Hub.Models.Tests;

public class LlamaConfigTests
{
    private static JsonObject Base() => new()
    {
        ["model_type"] = "llama", ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["vocab_size"] = 99, ["hidden_size"] = 32, ["intermediate_size"] = 37, ["num_hidden_layers"] = 2,
        ["num_attention_heads"] = 4, ["max_position_embeddings"] = 128,
    };

    private static LlamaConfig Read(JsonObject o) => LlamaConfig.Read(new ConfigReader(o, "/models/x/config.json"));

    [SkippableFact]
    public void Llama_tiny_config_reads_gqa_head_dim_and_untied_head()
    {
        var path = SharedDir.Require("fixtures/llama-tiny/config.json");
        var cfg = LlamaConfig.Read(new ConfigReader(ConfigReader.Load(path), path));
        Assert.Equal((512, 64, 172, 2, 8, 4, 8), (cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.KvHeads, cfg.HeadDim));
        Assert.Equal(1e-5, cfg.RmsNormEps, 12);
        Assert.Equal(10000.0, cfg.RopeTheta);
        Assert.Null(cfg.RopeScaling);
        Assert.False(cfg.TieWordEmbeddings);
        Assert.Equal("bfloat16", cfg.Dtype);
        Assert.Equal(1, cfg.BosTokenId);
        Assert.Equal([2], cfg.EosTokenIds);
    }

    [Fact]
    public void Defaults_follow_transformers_kv_heads_and_head_dim()
    {
        var cfg = Read(Base());
        Assert.Equal(4, cfg.KvHeads);
        Assert.Equal(8, cfg.HeadDim);
        Assert.Equal(1e-6, cfg.RmsNormEps);
        Assert.False(cfg.AttentionBias);
        Assert.False(cfg.MlpBias);
    }

    [Fact]
    public void Explicit_head_dim_may_differ_from_hidden_over_heads()
    {
        var o = Base(); o["head_dim"] = 16; o["num_key_value_heads"] = 2;
        var cfg = Read(o);
        Assert.Equal((16, 64, 32), (cfg.HeadDim, cfg.QDim, cfg.KvDim));
    }

    [Fact]
    public void Transformers5_rope_parameters_and_dtype_are_read()
    {
        var o = Base();
        o["dtype"] = "float16";
        o["rope_parameters"] = new JsonObject
        {
            ["rope_type"] = "llama3", ["rope_theta"] = 500000.0, ["factor"] = 8.0, ["low_freq_factor"] = 1.0,
            ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 8192,
        };
        var cfg = Read(o);
        Assert.Equal("float16", cfg.Dtype);
        Assert.Equal(500000.0, cfg.RopeTheta);
        Assert.Equal(new LlamaRopeScaling { Type = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 }, cfg.RopeScaling);
    }

    [Fact]
    public void Transformers5_default_rope_parameters_mean_no_scaling()
    {
        var o = Base();
        o["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 1e6 };
        var cfg = Read(o);
        Assert.Null(cfg.RopeScaling);
        Assert.Equal(1e6, cfg.RopeTheta);
    }

    [Fact]
    public void Transformers4_rope_scaling_with_legacy_type_key_is_read()
    {
        var o = Base();
        o["rope_theta"] = 20000.0;
        o["rope_scaling"] = new JsonObject { ["type"] = "linear", ["factor"] = 2.0 };
        var cfg = Read(o);
        Assert.Equal(20000.0, cfg.RopeTheta);
        Assert.Equal("linear", cfg.RopeScaling!.Type);
        Assert.Equal(2.0, cfg.RopeScaling.Factor);
    }

    [Fact]
    public void Dynamic_scaling_falls_back_to_max_position_embeddings()
    {
        var o = Base();
        o["rope_scaling"] = new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 4.0 };
        var s = Read(o).RopeScaling!;
        Assert.Equal(128, s.OriginalMaxPositionEmbeddings);
        var attr = s.ToAttribute();
        Assert.Equal("dynamic", (string?)attr["type"]);
        Assert.Equal(128, (int)attr["original_max_position_embeddings"]!);
    }

    [Fact]
    public void Unknown_rope_scaling_type_throws_naming_field_and_supported_types()
    {
        var o = Base();
        o["rope_scaling"] = new JsonObject { ["type"] = "su", ["factor"] = 2.0 };
        var e = Assert.Throws<ConfigException>(() => Read(o));
        Assert.Equal("rope_scaling.type", e.Field);
        Assert.Contains("'su'", e.Message);
        Assert.Contains("linear, dynamic, llama3", e.Message);
        Assert.Contains("/models/x/config.json", e.Message);
    }

    [Fact]
    public void Unknown_rope_type_in_rope_parameters_throws_naming_rope_type()
    {
        var o = Base();
        o["rope_parameters"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["rope_theta"] = 10000.0 };
        var e = Assert.Throws<ConfigException>(() => Read(o));
        Assert.Equal("rope_parameters.rope_type", e.Field);
        Assert.Contains("'yarn'", e.Message);
    }

    [Fact]
    public void Llama3_scaling_without_its_factors_throws()
    {
        var o = Base();
        o["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0, ["original_max_position_embeddings"] = 8192 };
        var e = Assert.Throws<ConfigException>(() => Read(o));
        Assert.Equal("rope_scaling.low_freq_factor", e.Field);
    }

    [Fact]
    public void Kv_heads_not_dividing_heads_throws()
    {
        var o = Base(); o["num_key_value_heads"] = 3;
        Assert.Equal("num_key_value_heads", Assert.Throws<ConfigException>(() => Read(o)).Field);
    }

    [Fact]
    public void Non_silu_activation_throws()
    {
        var o = Base(); o["hidden_act"] = "gelu";
        Assert.Equal("hidden_act", Assert.Throws<ConfigException>(() => Read(o)).Field);
    }

    [Theory]
    [InlineData("llama", null, true)]
    [InlineData("aquila", null, true)]
    [InlineData(null, "AquilaModel", true)]
    [InlineData(null, "AquilaForCausalLM", true)]
    [InlineData(null, "LlamaForCausalLM", true)]
    [InlineData("gpt2", "GPT2LMHeadModel", false)]
    [InlineData("chatglm", "ChatGLMModel", false)]
    public void Architecture_matches_llama_and_aquila_configs(string? modelType, string? arch, bool expected)
    {
        var o = new JsonObject();
        if (modelType is not null) o["model_type"] = modelType;
        if (arch is not null) o["architectures"] = new JsonArray(arch);
        Assert.Equal(expected, new LlamaArchitecture().Matches(o));
    }

    [Fact]
    public void Registry_resolves_aquila_to_the_llama_architecture()
    {
        var o = new JsonObject { ["model_type"] = "aquila", ["architectures"] = new JsonArray("AquilaModel") };
        Assert.Equal("llama", ModelRegistry.Resolve(o, "config.json").Name);
    }
}
