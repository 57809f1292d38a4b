namespace Hub;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHub { }
