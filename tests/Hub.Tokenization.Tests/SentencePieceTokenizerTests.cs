using System.Text.Json;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

/// <summary>The general (LLaMA-style) SentencePiece wrapper, on the ChatGLM2 fixture's BPE model in a LLaMA-like folder.</summary>
public sealed class SentencePieceTokenizerTests
{
    private static (SentencePieceTokenizer Tok, JsonElement Golden, string Dir) Load()
    {
        var src = SharedDir.Require("fixtures/chatglm2-tiny");
        var dir = SharedDir.TempDir("llamasp");
        File.Copy(Path.Combine(src, "tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            """{"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": true}""");
        var tok = Assert.IsType<SentencePieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        return (tok, JsonDocument.Parse(File.ReadAllText(Path.Combine(src, "golden.json"))).RootElement, dir);
    }

    [SkippableFact]
    public void Adds_bos_by_default_and_matches_sentencepiece_ids()
    {
        var (tok, g, dir) = Load();
        try
        {
            Assert.Equal(1, tok.BosTokenId);
            Assert.Equal(new[] { 2 }, tok.EosTokenIds);
            Assert.Equal(1000, tok.VocabSize);
            Assert.Equal(SentencePieceModel.Load(Path.Combine(dir, "tokenizer.model")).Count, tok.Model.Count);
            foreach (var c in g.GetProperty("tokenizer_cases").EnumerateArray())
            {
                var sp = c.GetProperty("sp_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                var text = c.GetProperty("text").GetString()!;
                Assert.Equal([1, .. sp], tok.Encode(text));
                Assert.Equal(sp, tok.Encode(text, addSpecialTokens: false));
                Assert.Equal(text, tok.Decode(tok.Encode(text), skipSpecialTokens: true));
            }
            foreach (var c in g.GetProperty("decode_cases").EnumerateArray())
                Assert.Equal(c.GetProperty("text").GetString(), tok.Decode(c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()));
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Special_token_strings_in_text_are_split_out_and_decoded_back()
    {
        var (tok, _, dir) = Load();
        try
        {
            var ids = tok.Encode("hi</s>there");
            Assert.Contains(2, ids);
            Assert.Equal("hi</s>there", tok.Decode(ids.AsSpan(1)).Replace("</s> ", "</s>", StringComparison.Ordinal));
            Assert.Equal("<s>hi", tok.Decode([1, .. tok.Encode("hi", false)]));
            Assert.Throws<ModelInputException>(() => tok.Decode([1000]));
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void Streaming_keeps_byte_fallback_emoji_whole_and_leading_space_rule()
    {
        var (tok, _, dir) = Load();
        try
        {
            var text = "世界和平 I love 🤖 and 😀! 龙飞凤舞";
            var ids = tok.Encode(text);
            var dec = tok.CreateStreamingDecoder();
            var pieces = StreamHelper.Run(dec, ids).ToList();
            Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
            Assert.Contains(pieces, p => p.Contains("🤖"));
            Assert.Equal(tok.Decode(ids, skipSpecialTokens: true), string.Concat(pieces));
            Assert.Equal(text, string.Concat(pieces));
        }
        finally { Directory.Delete(dir, true); }
    }
}
