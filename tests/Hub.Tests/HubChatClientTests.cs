using Hub.Generation;
using Hub.Tests;
using Microsoft.Extensions.AI;

namespace Hub.Integration.Tests;

/// <summary>Loads each fixture model once for the IChatClient tests.</summary>
public sealed class ChatModels : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-chatclient");
    private readonly Dictionary<string, CausalLM> _models = new();

    /// <summary>The model at shared/<paramref name="relative"/>, exported on first use (skips when absent).</summary>
    public CausalLM Get(string relative)
    {
        var dir = SharedDir.Require(relative);
        lock (_models)
        {
            if (!_models.TryGetValue(relative, out var lm))
                _models[relative] = lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
            return lm;
        }
    }

    public void Dispose()
    {
        foreach (var m in _models.Values) m.Dispose();
        try { Directory.Delete(_tmp, true); } catch (IOException) { }
    }
}

/// <summary><see cref="HubChatClient"/>: Microsoft.Extensions.AI's IChatClient over real fixture models.</summary>
public class HubChatClientTests(ChatModels models) : IClassFixture<ChatModels>
{
    private const string Stories = "models/karpathy/tinyllamas/stories260K";
    private const string Gpt2 = "fixtures/gpt2-tiny";

    private static readonly ChatOptions Greedy = new() { MaxOutputTokens = 12, Temperature = 0 };

    [SkippableTheory]
    [InlineData(Stories)]
    [InlineData(Gpt2)]
    public async Task Streaming_concatenation_equals_the_non_streaming_answer_for_greedy(string model)
    {
        var lm = models.Get(model);
        var client = lm.AsChatClient();
        ChatMessage[] messages = [new(ChatRole.System, "You tell stories."), new(ChatRole.User, "Once upon a time")];

        lm.Reset();
        var whole = await client.GetResponseAsync(messages, Greedy);
        lm.Reset(); // same starting state: no cache reuse
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, Greedy)) updates.Add(u);

        Assert.False(string.IsNullOrEmpty(whole.Text));
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.True(updates.Count(u => u.Text.Length > 0) > 1, "the answer arrived in one piece: not streamed");
        var combined = updates.ToChatResponse();
        Assert.Equal(whole.FinishReason, combined.FinishReason);
        Assert.Equal(whole.Usage!.OutputTokenCount, combined.Usage!.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount, combined.Usage.InputTokenCount);
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
    }

    [SkippableTheory]
    [InlineData(Stories)]
    [InlineData(Gpt2)]
    public async Task Usage_counts_prompt_and_answer_tokens_and_length_finish(string model)
    {
        var lm = models.Get(model);
        var client = new HubChatClient(lm);
        ChatMessage[] messages = [new(ChatRole.User, "Tell me a story")];
        var promptIds = client.Format.Build([Hub.Generation.Chat.ChatMessage.User("Tell me a story")]).Ids;

        var r = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 3, Temperature = 0 });
        var reply = Assert.IsType<Hub.Generation.Chat.ChatReply>(r.RawRepresentation);
        Assert.Equal(promptIds.Length, r.Usage!.InputTokenCount);
        Assert.Equal(reply.Ids.Length, r.Usage.OutputTokenCount);
        Assert.Equal(r.Usage.InputTokenCount + r.Usage.OutputTokenCount, r.Usage.TotalTokenCount);
        Assert.InRange(reply.Ids.Length, 1, 3);
        // Length exactly when the budget ran out; an eos/stop otherwise.
        Assert.Equal(reply.FinishReason == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, r.FinishReason);
        if (reply.FinishReason == FinishReason.Length) Assert.Equal(3, r.Usage.OutputTokenCount);
        Assert.Equal("hub", client.GetService<ChatClientMetadata>()!.ProviderName);
        Assert.Equal(client.ModelId, r.ModelId);
    }

    [SkippableFact]
    public async Task Follow_up_request_feeds_only_the_new_tokens()
    {
        var lm = models.Get(Stories);
        var client = new HubChatClient(lm);
        var history = new List<ChatMessage> { new(ChatRole.User, "Once upon a time") };
        lm.Reset();
        var first = await client.GetResponseAsync(history, Greedy);
        history.AddRange(first.Messages);
        history.Add(new ChatMessage(ChatRole.User, "What happened next?"));

        long before = lm.ForwardPositions;
        var second = await client.GetResponseAsync(history, Greedy);
        long fed = lm.ForwardPositions - before;

        var cached = second.Usage!.CachedInputTokenCount!.Value;
        Assert.True(cached >= first.Usage!.InputTokenCount, $"only {cached} cached tokens reused; the first prompt had {first.Usage.InputTokenCount}");
        Assert.Equal(cached, client.LastReusedTokens);
        // the prefill fed the uncached part of the prompt; each answer token but the last was fed back once
        Assert.Equal(second.Usage.InputTokenCount!.Value - cached + second.Usage.OutputTokenCount!.Value - 1, fed);

        // and the answer is the one a cold start gives
        lm.Reset();
        var cold = await client.GetResponseAsync(history, Greedy);
        Assert.Equal(0, cold.Usage!.CachedInputTokenCount);
        Assert.Equal(cold.Text, second.Text);
    }

    [SkippableFact]
    public async Task Seeded_sampling_is_reproducible_and_options_reach_the_generator()
    {
        var lm = models.Get(Stories);
        var client = new HubChatClient(lm);
        var opts = new ChatOptions { MaxOutputTokens = 16, Temperature = 0.9f, TopP = 0.95f, TopK = 40, Seed = 1234 };
        ChatMessage[] messages = [new(ChatRole.User, "Once upon a time")];
        var a = await client.GetResponseAsync(messages, opts);
        var b = await client.GetResponseAsync(messages, opts);
        Assert.Equal(a.Text, b.Text);

        var cfg = client.MapOptions(new ChatOptions
        {
            MaxOutputTokens = 7, Temperature = 0.5f, TopP = 0.8f, TopK = 5, Seed = 42, StopSequences = ["\n\n"],
            FrequencyPenalty = 0.25f, PresencePenalty = 0.5f, ModelId = client.ModelId.ToUpperInvariant(),
        });
        Assert.Equal(7, cfg.MaxNewTokens);
        Assert.True(cfg.DoSample);
        Assert.Equal(0.5f, cfg.Temperature);
        Assert.Equal(0.8f, cfg.TopP);
        Assert.Equal(5, cfg.TopK);
        Assert.Equal(42UL, cfg.Seed);
        Assert.Equal(["\n\n"], cfg.StopStrings!);
        Assert.Equal(0.25f, cfg.FrequencyPenalty);
        Assert.Equal(0.5f, cfg.PresencePenalty);
        Assert.False(client.MapOptions(new ChatOptions { Temperature = 0, TopP = 0.5f }).DoSample);
        var extra = client.MapOptions(new ChatOptions
        {
            MaxOutputTokens = 9,
            AdditionalProperties = new() { ["repetition_penalty"] = 1.3, ["min_p"] = 0.05f, ["max_new_tokens"] = 99, ["user_tag"] = "ignored" },
        });
        Assert.Equal(1.3f, extra.RepetitionPenalty);
        Assert.Equal(0.05f, extra.MinP);
        Assert.Equal(9, extra.MaxNewTokens); // the ChatOptions field wins over the same field in AdditionalProperties
        var bad = Assert.Throws<ConfigException>(() => client.MapOptions(new ChatOptions { AdditionalProperties = new() { ["top_k"] = "many" } }));
        Assert.Contains("top_k", bad.Message);
        Assert.False(client.MapOptions(null).IsSet(nameof(GenerationConfig.DoSample)));
        Assert.False(client.MapOptions(new ChatOptions { MaxOutputTokens = 5, Seed = 1 }).IsSet(nameof(GenerationConfig.DoSample))); // the repo's do_sample stays
        Assert.True(client.MapOptions(new ChatOptions { TopK = 5 }).DoSample);
    }

    [SkippableFact]
    public async Task Stop_sequences_end_the_answer_before_the_stop_text()
    {
        var lm = models.Get(Stories);
        var client = new HubChatClient(lm);
        ChatMessage[] messages = [new(ChatRole.User, "Once upon a time")];
        lm.Reset();
        var free = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 24, Temperature = 0 });
        var words = free.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Skip.If(words.Length < 3, "the greedy answer is too short to pick a stop word");
        var stop = " " + words[2];
        var cut = await client.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 24, Temperature = 0, StopSequences = [stop] });
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)].Trim(), cut.Text);
    }

    [SkippableFact]
    public async Task Unsupported_content_roles_and_options_are_rejected_by_name()
    {
        var client = new HubChatClient(models.Get(Stories));
        var image = new ChatMessage(ChatRole.User, [new TextContent("what is this?"), new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        var e1 = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image]));
        Assert.Contains("DataContent", e1.Message);
        var tool = new ChatMessage(ChatRole.Tool, "42");
        var e2 = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([tool]));
        Assert.Contains("tool", e2.Message);
        var call = new ChatMessage(ChatRole.Assistant, [new FunctionCallContent("c1", "f")]);
        var e3 = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi"), call]));
        Assert.Contains("FunctionCallContent", e3.Message);
        var e4 = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync("hi", new ChatOptions { ModelId = "gpt-4o" }));
        Assert.Contains("gpt-4o", e4.Message);
        var e5 = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync("hi", new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] }));
        Assert.Contains("Tools", e5.Message);
        Assert.Same(client.Model, client.GetService<CausalLM>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
    }

    [SkippableFact]
    public async Task Cancellation_stops_a_stream_and_the_client_stays_usable()
    {
        var lm = models.Get(Stories);
        var client = new HubChatClient(lm);
        using var cts = new CancellationTokenSource();
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync("Once upon a time", new ChatOptions { MaxOutputTokens = 200, Temperature = 0 }, cts.Token))
                if (u.Text.Length > 0 && ++pieces == 2) cts.Cancel();
        });
        Assert.Equal(2, pieces);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync("hi", Greedy, new CancellationToken(true)));

        var after = await client.GetResponseAsync("Once upon a time", Greedy);
        Assert.False(string.IsNullOrEmpty(after.Text));
    }

    [SkippableFact]
    public async Task Concurrent_requests_wait_their_turn_and_match_sequential_answers()
    {
        var lm = models.Get(Gpt2);
        var a = new HubChatClient(lm);
        var b = lm.AsChatClient();
        var opts = new ChatOptions { MaxOutputTokens = 8, Temperature = 0 };
        lm.Reset();
        var expectA = (await a.GetResponseAsync("The cat", opts)).Text;
        lm.Reset();
        var expectB = (await b.GetResponseAsync("A dog ran", opts)).Text;

        for (int round = 0; round < 2; round++)
        {
            lm.Reset();
            var streamed = Task.Run(async () =>
            {
                var sb = new System.Text.StringBuilder();
                await foreach (var u in b.GetStreamingResponseAsync("A dog ran", opts)) sb.Append(u.Text);
                return sb.ToString();
            });
            var whole = a.GetResponseAsync("The cat", opts);
            Assert.Equal(expectA, (await whole).Text);
            Assert.Equal(expectB, await streamed);
        }
    }
}
