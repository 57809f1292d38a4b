using System.Text.Json;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

public sealed class Llama2cTokenizerTests
{
    private static (Llama2cTokenizer Tok, JsonElement Cases) Load()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var tok = Llama2cTokenizer.Load(Path.Combine(dir, "tok512.bin"), 512);
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json"))).RootElement;
        return (tok, golden.GetProperty("cases"));
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [SkippableFact]
    public void Encodes_every_golden_prompt_exactly_as_run_c()
    {
        var (tok, cases) = Load();
        foreach (var c in cases.EnumerateArray())
            Assert.Equal(Ints(c.GetProperty("prompt_ids")), tok.Encode(c.GetProperty("prompt").GetString()!));
        Assert.Equal(new[] { 1, 403, 407, 261, 378 }, tok.Encode("Once upon a time"));
    }

    [SkippableFact]
    public void Decodes_greedy_ids_to_exactly_the_generated_text()
    {
        var (tok, cases) = Load();
        foreach (var c in cases.EnumerateArray())
        {
            var prompt = Ints(c.GetProperty("prompt_ids"));
            var greedy = Ints(c.GetProperty("greedy_ids"));
            var expected = c.GetProperty("generated_text").GetString()!;
            Assert.Equal(expected, tok.DecodeRunC(greedy, previousToken: prompt[^1]));
            Assert.Equal(expected, tok.Decode(greedy, skipSpecialTokens: true, previousToken: prompt[^1]));
            // the whole printed stream: prompt echo (after BOS) + continuation + run.c's final newline
            Assert.Equal(c.GetProperty("greedy_text").GetString(), tok.DecodeRunC(prompt.Concat(greedy).ToArray().AsSpan(1), prompt[0]) + "\n");
            Assert.Equal(c.GetProperty("greedy_text").GetString(), tok.Decode(prompt.Concat(greedy).ToArray(), skipSpecialTokens: true) + "\n");
        }
    }

    [SkippableFact]
    public void Header_and_piece_facts_match_the_file_format()
    {
        var (tok, _) = Load();
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(7, tok.MaxTokenLength);
        Assert.Equal(" the", tok.IdToToken(265));
        Assert.Equal(410, tok.TokenToId(" "));
        Assert.Equal(-(300 - 259), tok.Score(300));
        Assert.Equal(512, Llama2cTokenizer.Load(Path.Combine(SharedDir.Require("models/karpathy/tinyllamas/stories260K"), "tok512.bin")).VocabSize);
    }

    [SkippableFact]
    public void Byte_fallback_encodes_utf8_bytes_plus_three_and_run_c_printing_drops_them()
    {
        var (tok, _) = Load();
        var ids = tok.Encode("naïve\n", bos: true, eos: false);
        Assert.Contains(0xC3 + 3, ids);
        Assert.Contains(0xAF + 3, ids);
        Assert.Contains(13, ids);                                  // newline = <0x0A> = 10 + 3
        Assert.Equal("naïve\n", tok.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("nave\n", tok.DecodeRunC(ids.AsSpan(1), Llama2cTokenizer.Bos));
        Assert.Equal(new[] { 1 }, tok.Encode(""));
        Assert.Equal(2, tok.Encode("x", bos: false, eos: true)[^1]);
    }

    [SkippableFact]
    public void Streaming_decode_assembles_chinese_and_emoji_from_byte_tokens()
    {
        var (tok, _) = Load();
        var text = "Lily saw 北京 and 🙂 today.";
        var ids = tok.Encode(text);
        var dec = tok.CreateStreamingDecoder();
        var pieces = StreamHelper.Run(dec, ids).ToList();
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Equal(text, string.Concat(pieces));
        Assert.Equal(tok.Decode(ids, skipSpecialTokens: true), string.Concat(pieces));
    }

    [SkippableFact]
    public void Primed_streaming_decoder_reproduces_generated_text_for_every_case()
    {
        var (tok, cases) = Load();
        foreach (var c in cases.EnumerateArray())
        {
            var dec = tok.CreateStreamingDecoder();
            dec.Prime(Ints(c.GetProperty("prompt_ids")));
            var text = string.Concat(StreamHelper.Run(dec, Ints(c.GetProperty("greedy_ids"))));
            Assert.Equal(c.GetProperty("generated_text").GetString(), text);
        }
    }

    [SkippableFact]
    public void Out_of_range_id_and_truncated_file_are_typed_errors()
    {
        var (tok, _) = Load();
        var e = Assert.Throws<ModelInputException>(() => tok.Decode(new[] { 600 }));
        Assert.Contains("600", e.Message);
        Assert.Contains("512", e.Message);
        var dir = SharedDir.TempDir("tok");
        try
        {
            var path = Path.Combine(dir, "tok512.bin");
            var bytes = File.ReadAllBytes(Path.Combine(SharedDir.Require("models/karpathy/tinyllamas/stories260K"), "tok512.bin"));
            File.WriteAllBytes(path, bytes[..3000]);
            var ex = Assert.Throws<CheckpointFormatException>(() => Llama2cTokenizer.Load(path, 512));
            Assert.Contains("tok512.bin", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void AutoTokenizer_picks_llama2c_for_a_tok_bin_folder_with_vocab_from_the_checkpoint()
    {
        var dir = SharedDir.Require("models/karpathy/tinyllamas/stories260K");
        var tok = Assert.IsType<Llama2cTokenizer>(AutoTokenizer.FromPretrained(dir));
        Assert.Equal(512, tok.VocabSize);
        Assert.Equal(new[] { 1, 403, 407, 261, 378 }, tok.Encode("Once upon a time"));
    }
}
