namespace Hub.Runtime;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHubRuntime { }
