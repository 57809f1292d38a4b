using System.Text.Json;
using System.Text.Json.Nodes;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

/// <summary>tokenizer.json loading, built from GPT-2's real vocab/merges in both merges formats.</summary>
public sealed class TokenizerJsonTests : IClassFixture<Gpt2Fixture>
{
    private readonly Gpt2Fixture _fx;
    public TokenizerJsonTests(Gpt2Fixture fx) => _fx = fx;

    private string WriteTokenizerJson(bool arrayMerges, JsonNode? normalizer, JsonArray? extraAdded = null, JsonNode? preTokenizer = null)
    {
        _fx.Require();
        var vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(_fx.Dir!, "vocab.json")))!;
        var merges = new JsonArray();
        foreach (var line in File.ReadLines(Path.Combine(_fx.Dir!, "merges.txt")).Skip(1).Where(l => l.Length > 0))
        {
            if (arrayMerges) { var p = line.Split(' '); merges.Add(new JsonArray(p[0], p[1])); }
            else merges.Add(line);
        }
        var added = new JsonArray
        {
            new JsonObject { ["id"] = 50256, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = true, ["special"] = true },
        };
        foreach (var a in extraAdded ?? new JsonArray()) added.Add(a!.DeepClone());
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = normalizer?.DeepClone(),
            ["pre_tokenizer"] = preTokenizer?.DeepClone() ?? new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject { ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["vocab"] = vocab, ["merges"] = merges },
        };
        var dir = SharedDir.TempDir("tokjson");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        return dir;
    }

    [SkippableFact]
    public void Array_and_string_merges_both_reproduce_gpt2()
    {
        var reference = _fx.Require();
        foreach (var arrayMerges in new[] { true, false })
        {
            var dir = WriteTokenizerJson(arrayMerges, null);
            try
            {
                var tok = Assert.IsType<ByteLevelBpeTokenizer>(AutoTokenizer.FromPretrained(dir));
                foreach (var s in Gpt2TokenizerTests.VariedStrings(60).Append("x<|endoftext|>y"))
                    Assert.Equal(reference.Encode(s), tok.Encode(s));
                Assert.Equal(50256, tok.SpecialTokens["<|endoftext|>"]);
                Assert.Equal(50256, tok.BosTokenId);                   // GPT2Tokenizer default without a tokenizer_config.json
                Assert.Equal(new[] { 50256 }, tok.EosTokenIds);
            }
            finally { Directory.Delete(dir, true); }
        }
    }

    [SkippableFact]
    public void Added_tokens_honour_lstrip_rstrip_single_word_and_nfc_normalizer()
    {
        var reference = _fx.Require();
        var extra = new JsonArray
        {
            new JsonObject { ["id"] = 50257, ["content"] = "<|im_start|>", ["lstrip"] = true, ["rstrip"] = true, ["special"] = true, ["normalized"] = false, ["single_word"] = false },
            new JsonObject { ["id"] = 50258, ["content"] = "cat", ["lstrip"] = false, ["rstrip"] = false, ["special"] = false, ["normalized"] = true, ["single_word"] = true },
        };
        var dir = WriteTokenizerJson(true, new JsonObject { ["type"] = "NFC" }, extra);
        try
        {
            var tok = AutoTokenizer.FromPretrained(dir);
            Assert.Equal(50259, tok.VocabSize);
            Assert.Equal([.. reference.Encode("a"), 50257, .. reference.Encode("b")], tok.Encode("a  <|im_start|>  b"));
            Assert.Equal([50258, .. reference.Encode(" concatenate")], tok.Encode("cat concatenate"));
            Assert.Equal(reference.Encode("Caf\u00e9"), tok.Encode("Cafe\u0301"));                     // NFC applied first
            Assert.Equal("ab", tok.Decode(tok.Encode("a <|im_start|> b"), skipSpecialTokens: true));
            Assert.Equal("cat", tok.Decode([50258], skipSpecialTokens: true));                            // not special: kept
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Split_plus_bytelevel_sequence_pre_tokenizer_is_accepted()
    {
        var reference = _fx.Require();
        var pre = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray
            {
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = ByteLevelBpeTokenizer.Gpt2Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false },
            },
        };
        var dir = WriteTokenizerJson(false, null, null, pre);
        try
        {
            var tok = AutoTokenizer.FromPretrained(dir);
            foreach (var s in Gpt2TokenizerTests.VariedStrings(30)) Assert.Equal(reference.Encode(s), tok.Encode(s));
        }
        finally { Directory.Delete(dir, true); }
    }

    private static string TinyJson(JsonObject patch)
    {
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = new JsonObject { ["a"] = 0, ["b"] = 1, ["ab"] = 2 }, ["merges"] = new JsonArray("a b") },
        };
        foreach (var (k, v) in patch) root[k] = v?.DeepClone();
        var dir = SharedDir.TempDir("tokjson");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        return dir;
    }

    [Theory]
    [InlineData("{\"normalizer\": {\"type\": \"Lowercase\"}}", "normalizer 'Lowercase'")]
    [InlineData("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "pre_tokenizer 'Whitespace'")]
    [InlineData("{\"pre_tokenizer\": null}", "no pre_tokenizer")]
    [InlineData("{\"decoder\": {\"type\": \"WordPiece\"}}", "decoder 'WordPiece'")]
    [InlineData("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "'Unigram'")]
    public void Unsupported_components_fail_with_a_message_naming_them(string patch, string expected)
    {
        var dir = TinyJson(JsonNode.Parse(patch)!.AsObject());
        try
        {
            var e = Assert.Throws<TokenizerException>(() => AutoTokenizer.FromPretrained(dir));
            Assert.Contains(expected, e.Message);
            Assert.Contains("tokenizer.json", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Merge_naming_a_token_outside_the_vocab_is_a_tokenizer_error()
    {
        var dir = TinyJson(new JsonObject { ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = new JsonObject { ["a"] = 0, ["b"] = 1 }, ["merges"] = new JsonArray("a b") } });
        try { Assert.Throws<TokenizerException>(() => AutoTokenizer.FromPretrained(dir)); }
        finally { Directory.Delete(dir, true); }
    }
}

public sealed class AutoTokenizerTests
{
    [Fact]
    public void Empty_folder_lists_every_file_looked_for()
    {
        var dir = SharedDir.TempDir("empty");
        try
        {
            var e = Assert.Throws<ModelFileNotFoundException>(() => AutoTokenizer.FromPretrained(dir));
            foreach (var f in new[] { "tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "tok*.bin" }) Assert.Contains(f, e.Message);
            Assert.Throws<ModelFileNotFoundException>(() => AutoTokenizer.FromPretrained(Path.Combine(dir, "missing")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Tiktoken_rank_file_named_tokenizer_model_is_rejected_by_content()
    {
        var dir = SharedDir.TempDir("glm4");
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.model"), "IQ== 0\nIg== 1\nIw== 2\n");
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"tokenizer_class\": \"ChatGLM4Tokenizer\"}");
            var e = Assert.Throws<TokenizerException>(() => AutoTokenizer.FromPretrained(dir));
            Assert.Contains("tiktoken", e.Message);
            Assert.Contains("not a SentencePiece", e.Message);
            Assert.Contains("not supported", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Corrupt_sentencepiece_model_is_a_tokenizer_error_naming_the_file()
    {
        var dir = SharedDir.TempDir("badsp");
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), [0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]);
            var e = Assert.Throws<TokenizerException>(() => AutoTokenizer.FromPretrained(dir));
            Assert.Contains("tokenizer.model", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Config_reads_special_tokens_in_object_form_chat_template_list_and_ignores_huge_max_length()
    {
        var dir = SharedDir.TempDir("cfg");
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
                {"bos_token": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
                 "model_max_length": 1000000000000000019884624838656, "add_bos_token": true,
                 "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ messages }}"}]}
                """);
            File.WriteAllText(Path.Combine(dir, "special_tokens_map.json"), """{"eos_token": {"content": "</s>"}, "pad_token": "<pad>"}""");
            var cfg = TokenizerConfig.Load(dir);
            Assert.Equal("<s>", cfg.BosToken);
            Assert.Equal("</s>", cfg.EosToken);
            Assert.Equal("<pad>", cfg.PadToken);
            Assert.True(cfg.AddBosToken);
            Assert.Null(cfg.ModelMaxLength);
            Assert.Equal("{{ messages }}", cfg.ChatTemplate);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Picks_by_files_gpt2_tiny_bert_chatglm()
    {
        Assert.IsType<ByteLevelBpeTokenizer>(AutoTokenizer.FromPretrained(SharedDir.Require("fixtures/gpt2-tiny")));
        Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(SharedDir.Require("fixtures/bert-tiny-cls")));
        Assert.IsType<ChatGlmTokenizer>(AutoTokenizer.FromPretrained(SharedDir.Require("fixtures/chatglm2-tiny")));
    }

    [SkippableFact]
    public void Gpt2_tiny_golden_input_ids()
    {
        var dir = SharedDir.Require("fixtures/gpt2-tiny");
        var tok = AutoTokenizer.FromPretrained(dir);
        using var g = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
        foreach (var c in g.RootElement.GetProperty("cases").EnumerateArray())
            if (c.TryGetProperty("text", out var t))
                Assert.Equal(c.GetProperty("input_ids")[0].EnumerateArray().Select(x => x.GetInt32()), tok.Encode(t.GetString()!));
    }
}
