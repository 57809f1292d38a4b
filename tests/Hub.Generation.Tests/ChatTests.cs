using Hub.Generation;
using Hub.Generation.Chat;

namespace Hub.Generation.Tests;

public class ChatFormatTests
{
    [Fact]
    public void Aquila_format_matches_fastchat_single_and_multi_turn()
    {
        Assert.Equal("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.###Human: 北京为什么是中国的首都?###Assistant:",
            AquilaChatFormat.Render(new[] { ChatMessage.User("北京为什么是中国的首都?") }));
        Assert.Equal("Be brief.###Human: q1###Assistant: a1###Human: q2###Assistant:",
            AquilaChatFormat.Render(new[] { ChatMessage.System("Be brief."), ChatMessage.User("q1"), ChatMessage.Assistant("a1"), ChatMessage.User("q2") }));
        var tok = new FakeTokenizer(Array.Empty<string>(), new[] { "<s>", "</s>" }, prefix: new[] { "<s>" }, bos: "<s>", eos: new[] { "</s>" });
        var p = new AquilaChatFormat(tok).Build(new[] { ChatMessage.User("hi") });
        Assert.Equal(tok.Id("<s>"), p.Ids[0]);
        Assert.Contains("###", p.StopStrings);
        Assert.Contains(tok.Id("</s>"), p.StopIds);
    }

    [Fact]
    public void ChatGlm2_format_numbers_rounds_from_one()
    {
        Assert.Equal("[Round 1]\n\n问：你好\n\n答：你好👋\n\n[Round 2]\n\n问：北京为什么是中国的首都?\n\n答：",
            ChatGlm2Format.Render(new[] { ChatMessage.User("你好"), ChatMessage.Assistant("你好👋"), ChatMessage.User("北京为什么是中国的首都?") }));
        var tok = new FakeTokenizer(Array.Empty<string>(), new[] { "[gMASK]", "sop", "</s>" }, prefix: new[] { "[gMASK]", "sop" }, eos: new[] { "</s>" });
        var p = new ChatGlm2Format(tok).Build(new[] { ChatMessage.User("hi") });
        Assert.Equal(new[] { tok.Id("[gMASK]"), tok.Id("sop") }, p.Ids[..2]);
        Assert.Equal(tok.Encode("[Round 1]\n\n问：hi\n\n答："), p.Ids);
    }

    [Fact]
    public void ChatGlm3_format_builds_ids_piece_by_piece()
    {
        var specials = new[] { "[gMASK]", "sop", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>" };
        var tok = new FakeTokenizer(new[] { "\nh" }, specials, prefix: new[] { "[gMASK]", "sop" }, eos: new[] { "</s>" });
        var p = new ChatGlm3Format(tok).Build(new[] { ChatMessage.System("S"), ChatMessage.User("hi"), ChatMessage.Assistant("ok"), ChatMessage.User("q") });
        int[] E(string s) => tok.Encode(s, addSpecialTokens: false);
        var expected = new[] { tok.Id("[gMASK]"), tok.Id("sop") }
            .Append(tok.Id("<|system|>")).Concat(E("\n")).Concat(E("S"))
            .Append(tok.Id("<|user|>")).Concat(E("\n")).Concat(E("hi"))
            .Append(tok.Id("<|assistant|>")).Concat(E("\n")).Concat(E("ok"))
            .Append(tok.Id("<|user|>")).Concat(E("\n")).Concat(E("q"))
            .Append(tok.Id("<|assistant|>")).ToArray();
        Assert.Equal(expected, p.Ids);
        // encoding the pieces separately keeps "\n" and "hi" apart although "\nh" is one token of the vocabulary
        Assert.NotEqual(tok.Encode("\nhi", false), E("\n").Concat(E("hi")).ToArray());
        Assert.Equal(new[] { tok.Id("</s>"), tok.Id("<|user|>"), tok.Id("<|observation|>") }, p.StopIds);
        Assert.Throws<TokenizerException>(() => new ChatGlm3Format(new FakeTokenizer(Array.Empty<string>(), new[] { "</s>" })));
    }

    [Fact]
    public void Jinja_format_encodes_the_rendered_text_without_adding_special_tokens_and_stops_on_end_of_turn()
    {
        var tok = QwenLike();
        var f = new JinjaChatFormat(tok);
        var p = f.Build(new[] { ChatMessage.User("hi") });
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", p.Text);
        Assert.Equal(tok.Encode(p.Text!, addSpecialTokens: false), p.Ids);
        Assert.Equal(tok.Id("<|im_start|>"), p.Ids[0]);
        Assert.Contains(tok.Id("<|im_end|>"), p.StopIds);
        Assert.Contains(tok.Id("<|endoftext|>"), p.StopIds);
    }

    [Fact]
    public void Plain_format_and_automatic_choice()
    {
        Assert.Equal("Be kind.\n\nUser: hi\nAssistant: hello\nUser: bye\nAssistant:",
            PlainChatFormat.Render(new[] { ChatMessage.System("Be kind."), ChatMessage.User("hi"), ChatMessage.Assistant("hello"), ChatMessage.User("bye") }));
        var plain = new FakeTokenizer(Array.Empty<string>(), new[] { "</s>" }, eos: new[] { "</s>" });
        Assert.IsType<PlainChatFormat>(ChatFormats.For(plain, "gpt2"));
        Assert.IsType<AquilaChatFormat>(ChatFormats.For(plain, "aquila"));
        Assert.IsType<JinjaChatFormat>(ChatFormats.For(QwenLike(), "qwen2"));
        Assert.IsType<ChatGlm2Format>(ChatFormats.For(new FakeTokenizer(Array.Empty<string>(), new[] { "[gMASK]", "sop", "</s>" }), "chatglm"));
        var glm3 = new FakeTokenizer(Array.Empty<string>(), new[] { "[gMASK]", "sop", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>" }, chatTemplate: "{{ 'x' }}");
        Assert.IsType<ChatGlm3Format>(ChatFormats.For(glm3, "chatglm"));
    }

    internal static FakeTokenizer QwenLike() => new(new[] { "system", "user", "assistant", "You are" },
        new[] { "<|endoftext|>", "<|im_start|>", "<|im_end|>" }, eos: new[] { "<|endoftext|>" },
        chatTemplate: "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}");
}

public class ChatEngineTests
{
    private static (ChatEngine, FakeRunner, FakeTokenizer) Make(int maxContext = 4096)
    {
        var tok = ChatFormatTests.QwenLike();
        var model = new FakeRunner(tok.VocabSize, maxContext);
        var engine = new ChatEngine(model, tok, new JinjaChatFormat(tok), new GenerationConfig { MaxNewTokens = 6 });
        return (engine, model, tok);
    }

    [Fact]
    public void Later_turns_feed_only_what_the_cache_lacks_and_answer_as_a_fresh_run_would()
    {
        var (engine, model, tok) = Make();
        engine.SystemPrompt = "Be brief.";
        var r1 = engine.Send("Hello!");
        Assert.Equal(0, r1.ReusedTokens);
        Assert.Equal(r1.PromptIds.Length, r1.FedTokens);
        var fed1 = model.TokensFed;

        var r2 = engine.Send("And then?");
        // everything up to the first answer's start was cached
        Assert.True(r2.ReusedTokens >= r1.PromptIds.Length, $"reused {r2.ReusedTokens} < first prompt {r1.PromptIds.Length}");
        Assert.Equal(r1.PromptIds, r2.PromptIds[..r1.PromptIds.Length]);
        Assert.Equal(r2.PromptIds.Length - r2.ReusedTokens, r2.FedTokens);
        Assert.Equal(r2.FedTokens + r2.Ids.Length - 1, model.TokensFed - fed1); // new prompt suffix + answer tokens fed back

        // the same prompt from an empty cache gives the same answer
        var fresh = Generator.Generate(new FakeRunner(tok.VocabSize), new[] { r2.PromptIds }, engine.Defaults.Merge(new GenerationConfig { EosTokenId = new[] { tok.Id("<|endoftext|>"), tok.Id("<|im_end|>") } }));
        Assert.Equal(fresh.Sequences[0], r2.Ids);
        Assert.Equal(4, engine.History.Count);
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>", tok.Decode(r2.PromptIds));
    }

    [Fact]
    public void Changing_the_system_prompt_truncates_the_cache_to_the_common_prefix()
    {
        var (engine, model, tok) = Make();
        engine.SystemPrompt = "Be brief.";
        engine.Send("Hello!");
        engine.SystemPrompt = "Be bold.";
        var r = engine.Send("Again");
        var common = "<|im_start|>system\nBe b";
        Assert.Equal(tok.Encode(common, false).Length, r.ReusedTokens);
        Assert.Equal(r.PromptIds.Length - r.ReusedTokens, r.FedTokens);
    }

    [Fact]
    public void Reset_forgets_history_and_cache()
    {
        var (engine, model, _) = Make();
        engine.Send("Hello!");
        engine.Reset();
        Assert.Empty(engine.History);
        Assert.Equal(0, model.Batch);
        var r = engine.Send("Hello!");
        Assert.Equal(0, r.ReusedTokens);
    }

    [Fact]
    public void Overflowing_history_drops_oldest_turns_keeps_the_system_prompt_and_reports_it()
    {
        var (engine, model, tok) = Make(maxContext: 160);
        engine.SystemPrompt = "Be brief.";
        var events = new List<HistoryTruncatedEventArgs>();
        engine.HistoryTruncated += (_, e) => events.Add(e);
        for (int i = 0; i < 12; i++)
        {
            var r = engine.Send($"Question number {i}, please answer.");
            Assert.True(r.PromptIds.Length + 6 <= 160);
            Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>", tok.Decode(r.PromptIds));
            Assert.Contains($"Question number {i},", tok.Decode(r.PromptIds));
        }
        Assert.NotEmpty(events);
        Assert.All(events, e => Assert.Equal(0, e.DroppedMessages % 2));
        Assert.True(engine.DroppedMessages > 0);
        Assert.Equal("user", engine.History[0].Role);
        Assert.DoesNotContain(engine.History, m => m.Content.Contains("Question number 0,"));
    }

    [Fact]
    public void Streaming_pieces_concatenate_to_the_answer()
    {
        var (engine, _, _) = Make();
        var pieces = new List<string>();
        var r = engine.Send("Hello!", new GenerationConfig { MaxNewTokens = 20 }, pieces.Add);
        Assert.Equal(r.Text, string.Concat(pieces).Trim());
    }

    [Fact]
    public async Task Async_stream_yields_the_answer_and_the_reply()
    {
        var (engine, _, _) = Make();
        ChatReply? reply = null;
        var pieces = new List<string>();
        await foreach (var p in engine.SendStreamAsync("Hello!", new GenerationConfig { MaxNewTokens = 12 }, r => reply = r)) pieces.Add(p);
        Assert.NotNull(reply);
        Assert.Equal(reply!.Text, string.Concat(pieces).Trim());
        Assert.Equal(2, engine.History.Count);
    }

    [Fact]
    public void Aquila_chat_stops_at_the_separator_streams_without_it_and_reuses_the_cache()
    {
        var tok = new FakeTokenizer(new[] { " Sure", "###", "Human" }, new[] { "<s>", "</s>" }, prefix: new[] { "<s>" }, bos: "<s>", eos: new[] { "</s>" });
        int colon = ':';
        var script = tok.Encode(" Sure###Human", false);
        // emits the script after the last ':' (the prompt ends with "Assistant:"), then eos
        var model = new FakeRunner(tok.VocabSize, 4096, (t, d) =>
        {
            d.Clear();
            int j = t.Length - 1 - t.LastIndexOf(colon);
            d[j < script.Length ? script[j] : tok.Id("</s>")] = 5f;
        });
        var engine = new ChatEngine(model, tok, new AquilaChatFormat(tok), new GenerationConfig { MaxNewTokens = 20 });
        var pieces = new List<string>();
        var r1 = engine.Send("hi", onText: pieces.Add);
        Assert.Equal("Sure", r1.Text);
        Assert.Equal(FinishReason.StopString, r1.FinishReason);
        Assert.Equal(" Sure", string.Concat(pieces));
        var r2 = engine.Send("more");
        Assert.EndsWith("###Human: hi###Assistant: Sure###Human: more###Assistant:", tok.Decode(r2.PromptIds, true));
        Assert.True(r2.ReusedTokens > r1.PromptIds.Length);
    }

    [Fact]
    public void Beam_search_in_chat_is_rejected_naming_the_fields()
    {
        var (engine, _, _) = Make();
        var ex = Assert.Throws<GenerationConfigException>(() => engine.Send("x", new GenerationConfig { NumBeams = 2 }));
        Assert.Contains("num_beams", ex.Fields);
    }
}
