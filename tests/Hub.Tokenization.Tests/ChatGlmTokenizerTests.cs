using System.Text.Json;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

public sealed class ChatGlmTokenizerTests
{
    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static (ChatGlmTokenizer V2, ChatGlmTokenizer V3, JsonElement Golden) Load()
    {
        var dir = SharedDir.Require("fixtures/chatglm2-tiny");
        var v2 = Assert.IsType<ChatGlmTokenizer>(AutoTokenizer.FromPretrained(dir));
        var v3 = new ChatGlmTokenizer(v2.Model, chatGlm3: true);
        return (v2, v3, JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json"))).RootElement);
    }

    [SkippableFact]
    public void Tokenizer_cases_match_ids_sp_ids_and_pieces()
    {
        var (tok, _, g) = Load();
        Assert.False(tok.IsChatGlm3);
        foreach (var c in g.GetProperty("tokenizer_cases").EnumerateArray())
        {
            var text = c.GetProperty("text").GetString()!;
            Assert.Equal(Ints(c.GetProperty("ids")), tok.Encode(text));
            Assert.Equal(Ints(c.GetProperty("sp_ids")), tok.EncodeSegment(text));
            Assert.Equal(c.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray(), tok.Model.EncodeToPieces(text));
        }
    }

    [SkippableFact]
    public void Decode_cases_match_sentencepiece_decode()
    {
        var (tok, _, g) = Load();
        foreach (var c in g.GetProperty("decode_cases").EnumerateArray())
        {
            var ids = Ints(c.GetProperty("ids"));
            Assert.Equal(c.GetProperty("text").GetString(), tok.Decode(ids));
            Assert.Equal(c.GetProperty("text").GetString(), tok.Decode([tok.GMaskId, tok.SopId, .. ids], skipSpecialTokens: true));
        }
    }

    [SkippableFact]
    public void Special_ids_follow_the_sentencepiece_vocabulary()
    {
        var (v2, v3, g) = Load();
        var st = g.GetProperty("special_tokens");
        Assert.Equal(st.GetProperty("sentencepiece_vocab_size").GetInt32(), v2.Model.Count);
        foreach (var p in st.GetProperty("chatglm2").EnumerateObject()) Assert.Equal(p.Value.GetInt32(), v2.SpecialTokens[p.Name]);
        foreach (var p in st.GetProperty("chatglm3").EnumerateObject()) Assert.Equal(p.Value.GetInt32(), v3.SpecialTokens[p.Name]);
        Assert.Equal(1005, v2.VocabSize);
        Assert.Equal(1009, v3.VocabSize);
        Assert.Equal(new[] { 2 }, v2.EosTokenIds);
        Assert.Equal(new[] { 2, 1006, 1008 }, v3.EosTokenIds);
        Assert.Equal(0, v2.PadTokenId);
        Assert.Null(v2.BosTokenId);
        Assert.Equal("[gMASK]sophi", v2.Decode([1001, 1003, .. v2.EncodeSegment("hi")]));
        Assert.Equal("hi", v2.Decode([1001, 1003, .. v2.EncodeSegment("hi")], skipSpecialTokens: true));
        int[] pair = [1001, 1003, .. v2.EncodeSegment("a"), .. v2.EncodeSegment("b"), 2];
        Assert.Equal(pair, v2.EncodePair("a", "b"));
        var e = Assert.Throws<ModelInputException>(() => v2.Decode([1005]));
        Assert.Contains("1005", e.Message);
    }

    [SkippableFact]
    public void Chat_cases_for_chatglm2_prompt_and_chatglm3_per_piece_encoding()
    {
        var (v2, v3, g) = Load();
        foreach (var c in g.GetProperty("chat_cases").EnumerateArray())
        {
            var query = c.GetProperty("query").GetString()!;
            var ids = Ints(c.GetProperty("ids"));
            if (c.GetProperty("format").GetString() == "chatglm2")
            {
                var history = c.GetProperty("history").EnumerateArray().Select(h => (h[0].GetString()!, h[1].GetString()!)).ToList();
                Assert.Equal(c.GetProperty("prompt").GetString(), ChatGlmTokenizer.BuildChatGlm2Prompt(query, history));
                Assert.Equal(ids, v2.EncodeChatGlm2(query, history));
            }
            else
            {
                var history = c.GetProperty("history").EnumerateArray().Select(h => new ChatGlmMessage(
                    h.GetProperty("role").GetString()!, h.GetProperty("content").GetString()!,
                    h.TryGetProperty("metadata", out var m) ? m.GetString() : null)).ToList();
                Assert.Equal(ids, v3.EncodeChatGlm3(query, history, c.GetProperty("role").GetString()!));
            }
        }
    }

    [SkippableFact]
    public void Streaming_decode_of_chinese_and_emoji_equals_full_decode()
    {
        var (tok, _, _) = Load();
        var text = "你好，世界和平。 I love 🤖 and 😀! 龙飞凤舞";
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids, skipSpecialTokens: true));
        var dec = tok.CreateStreamingDecoder(skipSpecialTokens: true);
        var pieces = StreamHelper.Run(dec, ids).ToList();
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Equal(text, string.Concat(pieces));
        // primed with a prompt, a continuation keeps its leading space (not the start of the text)
        var primed = tok.CreateStreamingDecoder();
        primed.Prime(tok.Encode("你好"));
        var more = tok.EncodeSegment("and then 🤖");
        Assert.Equal(" and then 🤖", string.Concat(StreamHelper.Run(primed, more)));
        Assert.Equal("你好 and then 🤖", tok.Decode([.. tok.Encode("你好"), .. more], skipSpecialTokens: true));
        // a continuation stream (no prefix) keeps its SentencePiece leading-space rule
        var cont = tok.EncodeSegment(" and then");
        var d2 = tok.CreateStreamingDecoder();
        Assert.Equal(tok.Decode(cont), string.Concat(StreamHelper.Run(d2, cont)));
    }

    [SkippableFact]
    public void ChatGlm3_is_detected_from_a_role_token_chat_template()
    {
        var src = SharedDir.Require("fixtures/chatglm2-tiny");
        var dir = SharedDir.TempDir("glm3");
        try
        {
            File.Copy(Path.Combine(src, "tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
                {"tokenizer_class": "ChatGLMTokenizer", "chat_template": "{% for m in messages %}<|{{ m['role'] }}|>\n {{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"}
                """);
            var tok = Assert.IsType<ChatGlmTokenizer>(AutoTokenizer.FromPretrained(dir));
            Assert.True(tok.IsChatGlm3);
            Assert.Equal(1006, tok.RoleId("user"));
            File.Delete(Path.Combine(dir, "tokenizer.model"));
            File.Delete(Path.Combine(dir, "tokenizer_config.json"));
            File.WriteAllBytes(Path.Combine(dir, "ice_text.model"), [1, 2, 3]);
            Assert.Contains("icetk", Assert.Throws<TokenizerException>(() => AutoTokenizer.FromPretrained(dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
