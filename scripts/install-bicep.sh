#!/usr/bin/env bash
# Installs the Bicep CLI into .tools/bicep/ (git-ignored) from the NuGet package
# Azure.Bicep.CommandLine.linux-x64, restored by the .NET SDK's own client, and prints its path.
# Idempotent: an existing install of the pinned version is reused. Needs: dotnet (SDK), NuGet.
set -euo pipefail
cd "$(dirname "$0")/.."

BICEP_VERSION="0.49.2"   # pinned: CI builds infra/main.json with it and compares with the committed copy
PACKAGE="Azure.Bicep.CommandLine.linux-x64"
tools="$PWD/.tools"
bicep="$tools/bicep/$BICEP_VERSION/bicep"

if [[ ! -x "$bicep" ]]; then
  command -v dotnet >/dev/null || { echo "install-bicep: the .NET SDK (dotnet) is needed to restore $PACKAGE from NuGet" >&2; exit 1; }
  restore="$tools/restore"
  rm -rf "$restore" && mkdir -p "$restore"
  # A throwaway project whose only job is to download the package: no build, no runtime needed.
  cat > "$restore/restore.csproj" <<CSPROJ
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFramework>net$(dotnet --version | cut -d. -f1-2)</TargetFramework>
  </PropertyGroup>
  <ItemGroup>
    <PackageDownload Include="$PACKAGE" Version="[$BICEP_VERSION]" />
  </ItemGroup>
</Project>
CSPROJ
  dotnet restore "$restore/restore.csproj" --packages "$tools/nuget" --nologo -v quiet >&2
  found=$(find "$tools/nuget/$(tr '[:upper:]' '[:lower:]' <<<"$PACKAGE")/$BICEP_VERSION" -type f -name bicep | head -n 1)
  [[ -n "$found" ]] || { echo "install-bicep: $PACKAGE $BICEP_VERSION restored, but no bicep binary found in it" >&2; exit 1; }
  mkdir -p "$(dirname "$bicep")"
  cp "$found" "$bicep" && chmod +x "$bicep"
  rm -rf "$restore" "$tools/nuget"
fi
echo "$bicep"
