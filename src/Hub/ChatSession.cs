using System.Runtime.CompilerServices;
using Hub.Generation;
using Hub.Generation.Chat;

namespace Hub;

/// <summary>
/// A multi-turn chat over a <see cref="CausalLM"/>: history, system prompt, the repo's chat template (or a built-in
/// format), and KV-cache reuse across turns (only the new part of the conversation is fed), as OpenVINO GenAI's
/// start_chat/finish_chat does.
/// </summary>
public sealed class ChatSession
{
    private readonly ChatEngine _engine;

    /// <summary>Starts a session on <paramref name="model"/>; the format is chosen from its tokenizer and config.</summary>
    public ChatSession(CausalLM model, string? systemPrompt = null, IChatFormat? format = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        (_engine, Format) = model.CreateChatEngine(format, "chat");
        _engine.SystemPrompt = systemPrompt;
        _engine.HistoryTruncated += (_, e) => HistoryTruncated?.Invoke(this, e);
    }

    /// <summary>The model.</summary>
    public CausalLM Model { get; }

    /// <summary>The prompt format in use.</summary>
    public IChatFormat Format { get; }

    /// <summary>The system prompt (never dropped when history is trimmed).</summary>
    public string? SystemPrompt { get => _engine.SystemPrompt; set => _engine.SystemPrompt = value; }

    /// <summary>The conversation so far.</summary>
    public IReadOnlyList<ChatMessage> History => _engine.History;

    /// <summary>Raised when the oldest turns were dropped to fit the context.</summary>
    public event EventHandler<HistoryTruncatedEventArgs>? HistoryTruncated;

    /// <summary>Forgets the conversation and the cache.</summary>
    public void Reset() => _engine.Reset();

    /// <summary>Sends a user message; <paramref name="onText"/> receives the answer as it streams.</summary>
    public ChatReply Send(string message, GenerationConfig? overrides = null, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        using var gate = Model.GenerationGate.Enter(cancellationToken);
        return _engine.Send(message, overrides, onText, cancellationToken);
    }

    /// <summary>Sends a user message and streams the answer.</summary>
    public IAsyncEnumerable<string> SendStreamAsync(string message, GenerationConfig? overrides = null, CancellationToken cancellationToken = default) =>
        Model.GenerationGate.Stream(ct => _engine.SendStreamAsync(message, overrides, null, ct), cancellationToken);
}
