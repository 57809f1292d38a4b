namespace Hub;

/// <summary>Base of every error a user can cause through Hub; the message names the file/field and the fix.</summary>
public class HubException : Exception
{
    /// <summary>Creates the exception.</summary>
    public HubException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A checkpoint file (safetensors, torch .bin, llama2.c .bin, ...) is corrupt, truncated or inconsistent.</summary>
public class CheckpointFormatException : HubException
{
    /// <summary>The offending file.</summary>
    public string FilePath { get; }
    /// <summary>The offending tensor, when one is known.</summary>
    public string? TensorName { get; }

    /// <summary>Creates the exception; the message is prefixed with the file and tensor.</summary>
    public CheckpointFormatException(string filePath, string? tensorName, string message, Exception? inner = null)
        : base(Format(filePath, tensorName, message), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    private static string Format(string file, string? tensor, string message) =>
        tensor is null ? $"{file}: {message}" : $"{file}: tensor '{tensor}': {message}";
}

/// <summary>A pickle names a global outside the allow-list; nothing from it was executed.</summary>
public sealed class UnsafePickleException : CheckpointFormatException
{
    /// <summary>The rejected global, as <c>module.name</c>.</summary>
    public string Global { get; }

    /// <summary>Creates the exception.</summary>
    public UnsafePickleException(string filePath, string global)
        : base(filePath, null, $"pickle references '{global}', which is not allowed in a checkpoint (only tensor-rebuild and container globals are); " +
               "the file was rejected before anything in it ran. Convert it to safetensors with a trusted tool if you trust its origin.")
        => Global = global;
}

/// <summary>A configuration file (config.json, params.json, ...) lacks a field or has a bad value.</summary>
public sealed class ConfigException : HubException
{
    /// <summary>The configuration file.</summary>
    public string FilePath { get; }
    /// <summary>The field at fault.</summary>
    public string Field { get; }

    /// <summary>Creates the exception.</summary>
    public ConfigException(string filePath, string field, string message, Exception? inner = null)
        : base($"{filePath}: field '{field}': {message}", inner)
    {
        FilePath = filePath;
        Field = field;
    }
}

/// <summary>The model's architecture or a requested option is not supported.</summary>
public sealed class UnsupportedModelException : HubException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedModelException(string message) : base(message) { }
}

/// <summary>An IR folder (model.ir.json / model.ir.bin) is corrupt, truncated or of another version.</summary>
public sealed class IrFormatException : HubException
{
    /// <summary>The offending file.</summary>
    public string FilePath { get; }

    /// <summary>Creates the exception.</summary>
    public IrFormatException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner) => FilePath = filePath;
}

/// <summary>A tokenizer file is missing or unreadable, or a tokenizer operation is impossible.</summary>
public sealed class TokenizerException : HubException
{
    /// <summary>Creates the exception.</summary>
    public TokenizerException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Bad input to a model: token id outside the vocabulary, prompt longer than the context, empty batch, ...</summary>
public sealed class ModelInputException : HubException
{
    /// <summary>Creates the exception.</summary>
    public ModelInputException(string message) : base(message) { }
}

/// <summary>A file a model needs is missing from its folder.</summary>
public sealed class ModelFileNotFoundException : HubException
{
    /// <summary>The missing path.</summary>
    public string FilePath { get; }

    /// <summary>Creates the exception.</summary>
    public ModelFileNotFoundException(string filePath, string hint)
        : base($"{filePath} not found: {hint}") => FilePath = filePath;
}
