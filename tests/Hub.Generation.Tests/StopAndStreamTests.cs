using System.Text;
using Hub.Generation;

namespace Hub.Generation.Tests;

public class StopAndStreamTests
{
    /// <summary>A runner that emits <paramref name="script"/> (as one-hot logits) after the prompt, then eos.</summary>
    internal static FakeRunner Scripted(FakeTokenizer tok, int promptLength, IReadOnlyList<int> script, int eos)
        => new(tok.VocabSize, 512, (t, dest) =>
        {
            dest.Clear();
            int k = t.Length - promptLength;
            dest[k >= 0 && k < script.Count ? script[k] : eos] = 10f;
        });

    private static FakeTokenizer Tok() => new(new[] { "Hel", "lo#", "##x", "a###b", "yz", "中文", "好" }, new[] { "</s>", "<s>" }, eos: new[] { "</s>" });

    private static int[] Ids(FakeTokenizer tok, params string[] pieces) => pieces.Select(p => tok.TokenToId(p) ?? Encoding.UTF8.GetBytes(p)[0]).ToArray();

    private static GenerationResult Run(FakeTokenizer tok, int[] script, GenerationConfig cfg, GenerationHooks? hooks = null)
    {
        var prompt = new[] { tok.Id("<s>") };
        cfg.EosTokenId ??= new[] { tok.Id("</s>") };
        hooks ??= new GenerationHooks();
        hooks = new GenerationHooks { OnToken = hooks.OnToken, Decode = ids => tok.Decode(ids, true) };
        return Generator.Generate(Scripted(tok, 1, script, tok.Id("</s>")), new[] { prompt }, cfg, hooks);
    }

    [Fact]
    public void Stop_string_across_a_token_boundary_is_cut_from_text_and_ids()
    {
        var tok = Tok();
        var script = Ids(tok, "Hel", "lo#", "##x", "yz", "yz");
        var r = Run(tok, script, new GenerationConfig { MaxNewTokens = 10, StopStrings = new[] { "###" } });
        Assert.Equal(FinishReason.StopString, r.FinishReasons[0]);
        Assert.Equal("Hello", r.Texts[0]);
        Assert.Equal(script[..1], r.Sequences[0]); // "lo#" straddles the stop string: the ids stop before it

        var inc = Run(tok, script, new GenerationConfig { MaxNewTokens = 10, StopStrings = new[] { "###" }, IncludeStopStrInOutput = true });
        Assert.Equal("Hello###", inc.Texts[0]);
        Assert.Equal(script[..3], inc.Sequences[0]);
    }

    [Fact]
    public void Stop_string_after_a_long_output_is_found_and_cut_exactly()
    {
        var tok = Tok();
        var script = Enumerable.Repeat(Ids(tok, "yz")[0], 150).Concat(Ids(tok, "Hel", "lo#", "##x", "yz")).ToArray();
        var r = Run(tok, script, new GenerationConfig { MaxNewTokens = 400, StopStrings = new[] { "###" } });
        Assert.Equal(FinishReason.StopString, r.FinishReasons[0]);
        Assert.Equal(string.Concat(Enumerable.Repeat("yz", 150)) + "Hello", r.Texts[0]);
        Assert.Equal(script[..151], r.Sequences[0]);
    }

    [Fact]
    public void Stop_string_inside_one_token_is_found()
    {
        var tok = Tok();
        var script = Ids(tok, "yz", "a###b", "yz");
        var r = Run(tok, script, new GenerationConfig { MaxNewTokens = 10, StopStrings = new[] { "zz", "###" } });
        Assert.Equal("yza", r.Texts[0]);
        Assert.Equal(script[..1], r.Sequences[0]);
    }

    [Fact]
    public void Stop_string_split_inside_a_utf8_character_is_found()
    {
        var tok = Tok();
        var bytes = Encoding.UTF8.GetBytes("好。x");
        var script = new[] { tok.TokenToId("中文")!.Value }.Concat(bytes.Select(b => (int)b)).ToArray();
        var r = Run(tok, script, new GenerationConfig { MaxNewTokens = 20, StopStrings = new[] { "。" } });
        Assert.Equal("中文好", r.Texts[0]);
        Assert.Equal(FinishReason.StopString, r.FinishReasons[0]);
        Assert.Equal(4, r.Sequences[0].Length); // 中文 + three bytes of 好
    }

    [Fact]
    public void Stop_strings_without_a_decoder_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => Generator.Generate(new FakeRunner(10), new[] { new[] { 1 } }, new GenerationConfig { StopStrings = new[] { "x" } }));
    }

    [Fact]
    public void Text_streamer_holds_back_a_possible_stop_string_and_matches_the_final_text()
    {
        var tok = Tok();
        var script = Ids(tok, "Hel", "lo#", "##x", "yz");
        var pieces = new List<string>();
        var streamer = new TextStreamer(tok, pieces.Add, new[] { "###" });
        var r = Run(tok, script, new GenerationConfig { MaxNewTokens = 10, StopStrings = new[] { "###" } }, streamer.ToHooks());
        streamer.End();
        Assert.Equal(r.Texts[0], string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('#'));
    }

    [Fact]
    public async Task Streaming_chinese_and_emoji_yields_valid_pieces_whose_concatenation_is_the_decode()
    {
        var tok = Tok();
        var text = "北京是中国的首都🙂好中文👍🏽!";
        var script = tok.Encode(text, addSpecialTokens: false);
        Assert.True(script.Length > text.Length); // mostly single bytes: characters are split across tokens
        var model = Scripted(tok, 1, script, tok.Id("</s>"));
        var pieces = new List<string>();
        await foreach (var piece in GenerationStreaming.GenerateStreamAsync(model, tok, new[] { tok.Id("<s>") },
                           new GenerationConfig { MaxNewTokens = 200, EosTokenId = new[] { tok.Id("</s>") } }))
            pieces.Add(piece);
        Assert.Equal(text, string.Concat(pieces));
        Assert.True(pieces.Count > 5);
        // every piece boundary is a grapheme boundary: 👍🏽 (two code points, eight byte tokens) is never split
        var boundaries = System.Globalization.StringInfo.ParseCombiningCharacters(text).Append(text.Length).ToHashSet();
        int pos = 0;
        foreach (var p in pieces) { pos += p.Length; Assert.Contains(pos, boundaries); }
        foreach (var p in pieces)
        {
            Assert.DoesNotContain('\uFFFD', p);
            Assert.False(char.IsHighSurrogate(p[^1]), "piece ends in half a surrogate pair");
            Assert.False(char.IsLowSurrogate(p[0]), "piece starts with half a surrogate pair");
        }
    }

    [Fact]
    public async Task Streaming_stops_when_cancelled()
    {
        var tok = Tok();
        var model = new FakeRunner(tok.VocabSize, 100_000, (t, d) => { d.Clear(); d['a'] = 1; });
        using var cts = new CancellationTokenSource();
        int n = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in GenerationStreaming.GenerateStreamAsync(model, tok, new[] { 1 }, new GenerationConfig { MaxNewTokens = 90_000 }, cts.Token))
                if (++n == 5) cts.Cancel();
        });
        Assert.True(model.PastLength < 90_000);
    }
}
